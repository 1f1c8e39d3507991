"""The S17 experiment (``minivl/recipes/clip_shift.py``) end to end at toy size:
it reads a CLIP run, trains the ViT, scores both on every test distribution
and draws the plot; a run of the wrong kind is refused."""

from __future__ import annotations

import pytest

from minivl.data.clip_pairs import SHIFTS
from minivl.recipes.clip import train_clip
from minivl.recipes.clip_shift import shift_experiment


def test_shift_experiment_scores_both_models_on_every_distribution(tmp_path):
    train_clip(task="shapes", steps=2, batch_size=16, dim=16, depth=1, heads=2, embed_dim=8,
               n_train=200, n_zero_shot=20, n_retrieval=20, progress=False, out=tmp_path, eval_every=100)
    r = shift_experiment(tmp_path / "clip.safetensors", n_test=30, vit_steps=2, progress=False,
                         plot=tmp_path / "shift.png")
    assert list(r["accuracy"]) == ["training distribution", *SHIFTS]
    for row in r["accuracy"].values():
        assert set(row) == {"supervised ViT", "zero-shot CLIP"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert (tmp_path / "shift.png").stat().st_size > 1000


def test_shift_experiment_needs_a_shapes_run(tmp_path):
    train_clip(task="digits", steps=1, batch_size=16, dim=16, depth=1, heads=2, embed_dim=8,
               progress=False, out=tmp_path, eval_every=100)
    with pytest.raises(ValueError, match="shapes run"):
        shift_experiment(tmp_path / "clip.safetensors", n_test=10, vit_steps=1, progress=False)
