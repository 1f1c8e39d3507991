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
