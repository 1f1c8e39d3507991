"""The S38 table reads each row's figures from its results file, or says "not yet run"."""

from __future__ import annotations

import json

from minivl.recipes.summary import ROWS, figures, markdown_table


def test_rows_read_their_results_files(tmp_path):
    (tmp_path / "llava_study.json").write_text(json.dumps({"results": {"mean": {"stage2": {
        "short_answer": 0.876, "describe_f1": 0.5, "reasoning": 0.25}}}}))
    assert figures("LLaVA", tmp_path).startswith("short answers 0.88, description F1 0.50, reasoning 0.25")
    assert figures("DALL-E", tmp_path) == "not yet run"
    table = markdown_table(tmp_path)
    assert len(table.splitlines()) == 2 + len(ROWS)
    assert table.count("not yet run") == len(ROWS) - 1


def test_the_committed_table_names_every_model():
    table = markdown_table()
    for name in ("BERT", "GPT", "ViT", "ViLBERT", "CLIP", "ClipCap", "DALL-E", "LLaVA"):
        assert f"| {name} |" in table


def test_the_lecture_quotes_the_table_as_the_results_files_give_it_today():
    from pathlib import Path

    notes = (Path(__file__).resolve().parents[2] / "lectures" / "10-llava.md").read_text()
    assert markdown_table() in notes, "rerun `python -m minivl.recipes.summary` and paste it into S38"


def test_the_dalle_row_reads_stage_one_and_the_judged_generations(tmp_path):
    (tmp_path / "dvae.json").write_text(json.dumps({"runs": {"0": {"metrics": {
        "psnr_test": 24.26, "used_codes": 198, "vocab_size": 256}}}}))
    assert figures("DALL-E", tmp_path) == ("stage 1: held-out PSNR 24.3 dB, 198 of 256 codes used (seed 0); "
                                           "generations not yet judged (`results/dvae.json`)")
    sets = {"held_out_scenes": {"correct": 0.5, "correct_rerank": 0.75},
            "held_out_pairs": {"correct": 0.25, "correct_rerank": 0.13}}
    (tmp_path / "dalle.json").write_text(json.dumps({"runs": {"0": {"evaluation": sets}}}))
    assert figures("DALL-E", tmp_path).endswith(
        "generations correct 0.50 on held-out captions, 0.25 on unseen colour-shape pairs (0.75 / 0.13 "
        "CLIP-reranked, seed 0) (`results/dvae.json`, `results/dalle.json`)")


def test_the_dalle_row_quotes_the_recipes_guidance_scale(tmp_path, monkeypatch):
    """A run judged at several guidance scales: the row quotes the recipe's (GUIDANCE), and says so
    unless it is 1 (DALL-E's own sampling); a run without the sweep falls back to ``evaluation``."""
    from minivl.recipes import dalle

    (tmp_path / "dvae.json").write_text(json.dumps({"runs": {"0": {"metrics": {
        "psnr_test": 24.26, "used_codes": 198, "vocab_size": 256}}}}))

    def sets(x):
        return {"held_out_scenes": {"correct": x, "correct_rerank": x},
                "held_out_pairs": {"correct": x, "correct_rerank": x}}

    (tmp_path / "dalle.json").write_text(json.dumps({"runs": {"0": {"evaluation": sets(0.1),
                                                                     "evaluation_by_guidance": {
                                                                         "1.0": sets(0.1), "3.0": sets(0.3)}}}}))
    assert "correct 0.10 on held-out captions" in figures("DALL-E", tmp_path)
    assert "guidance" not in figures("DALL-E", tmp_path)
    monkeypatch.setattr(dalle, "GUIDANCE", 3.0)
    assert "correct 0.30 on held-out captions, 0.30 on unseen colour-shape pairs (0.30 / 0.30 CLIP-reranked, " \
           "seed 0, guidance 3)" in figures("DALL-E", tmp_path)
    monkeypatch.setattr(dalle, "GUIDANCE", 5.0)  # not judged at 5: the run's own evaluation, unlabelled
    assert "correct 0.10" in figures("DALL-E", tmp_path) and "guidance" not in figures("DALL-E", tmp_path)
