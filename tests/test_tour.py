"""``minivl tour`` end to end with every stage cut to a few steps: each stage
runs, and the report links plots that exist."""

from __future__ import annotations

import json
import re

import pytest

from minivl.cli import main
from minivl.recipes import tour


@pytest.mark.slow
def test_tour_writes_a_complete_report(tmp_path, monkeypatch):
    monkeypatch.setattr(tour, "STEPS", {k: (3, 3) for k in tour.STEPS})
    monkeypatch.setattr(tour, "DATA", {k: (200, 200) for k in tour.DATA})
    assert main(["tour", "--quick", "--out", str(tmp_path), "--no-progress", "--use", "numpy"]) == 0
    text = (tmp_path / "report.md").read_text()
    for title in ("tokenizer", "BERT", "GPT", "ViT", "ViLBERT", "CLIP", "DALL-E", "LLaVA", "summary table",
                  "Timings"):
        assert re.search(rf"^## .*{title}", text, re.M), title
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) >= 8
    assert all((tmp_path / name).stat().st_size > 1000 for name in images)
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"bert", "gpt", "vit_digits", "vit_shapes", "clip_shapes", "clip_digits", "vilbert_pretrain",
            "vilbert_vqa", "vilbert_refexp", "dalle", "llava", "llava_by_type"} <= set(results)
    llava = results["llava"]
    assert 0.0 <= llava["short-answer accuracy, another scene's picture"] <= 1.0  # the swapped-picture check ran
    assert 0.0 <= results["vit_digits"]["test accuracy"] <= 1.0
    timings = results["timings"]
    assert {"bert (s)", "bert CPU (s)", "total CPU (s)", "blas threads", "numba threads"} <= set(timings)
    assert 0 < timings["total CPU (s)"]


def test_tour_rejects_unknown_stages(tmp_path):
    with pytest.raises(SystemExit, match="--only"):
        main(["tour", "--only", "bert,imagen", "--out", str(tmp_path)])


def test_cli_version_and_info(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "minivl 0.1.0" in capsys.readouterr().out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "backends available" in out
