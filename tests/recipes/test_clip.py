"""The CLIP recipe (``minivl/recipes/clip.py``): a run resumed from its training
state equals the uninterrupted run, gradient caching follows the plain run,
bad options raise, and (slow) the default recipe clears floors on the honest
evaluation, so the figures in the README cannot rot unnoticed."""

from __future__ import annotations

import numpy as np
import pytest

import minivl as mv
from minivl.recipes.clip import load_run, train_clip

TINY = dict(task="digits", batch_size=16, dim=16, depth=1, heads=2, embed_dim=8, vocab_size=280,
            progress=False)


def test_training_resumes_exactly(tmp_path):
    options = dict(TINY, eval_every=3)
    straight = train_clip(steps=6, **options)
    train_clip(steps=6, stop_after=3, out=tmp_path, **options)  # as if interrupted at step 3
    resumed = train_clip(steps=6, resume=tmp_path / "clip.safetensors", **options)
    assert resumed["history"].steps == [4, 5, 6]
    np.testing.assert_allclose(resumed["history"].loss, straight["history"].loss[3:], rtol=1e-6)
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-7, err_msg=name)
    model, tokenizer, meta = load_run(tmp_path / "clip.safetensors")
    assert meta["task"] == "digits" and tokenizer.vocab_size == model.config.vocab_size
    with pytest.raises(ValueError, match="patches"):  # a run drawn at another image size
        train_clip(steps=6, resume=tmp_path / "clip.safetensors", **{**options, "image_size": 8})
    with pytest.raises(ValueError, match="digits"):
        train_clip(steps=6, resume=tmp_path / "clip.safetensors", **{**options, "task": "shapes"})
    assert 0.0 <= resumed["metrics"]["text_label_top1"] <= 1.0
    assert resumed["metrics"]["test_images_in_train"] == 0


def test_training_with_a_gradient_cache_follows_the_plain_run():
    options = dict(TINY, steps=3, eval_every=0)
    plain = train_clip(**options)
    chunked = train_clip(chunk_size=4, **options)
    np.testing.assert_allclose(chunked["history"].loss, plain["history"].loss, rtol=1e-4)
    a, b = plain["model"].state_dict(), chunked["model"].state_dict()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("bad, match", [({"layout": "spiral"}, "layout"), ({"task": "food101"}, "task"),
                                        ({"chunk_size": 4, "distributed": True}, "chunk_size")])
def test_bad_options_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        train_clip(steps=1, **bad)


# Floors for the default recipe (seed 0): results/clip_shapes.json records 98.7% held-out
# zero-shot, 100% on seen pairs and R@1 96.4% / 93.8%; the floors sit 9-15 points lower, so
# rounding on another backend or machine never trips them, while a broken recipe does.
FLOORS = {"held_out_top1": 0.85, "seen_top1": 0.9, "image_to_text_R@1": 0.85, "text_to_image_R@1": 0.8}


@pytest.mark.slow
def test_default_recipe_clears_its_floors():
    previous = mv.backend.current()
    mv.use("numba")
    try:
        m = train_clip(task="shapes", progress=False, eval_every=10**9)["metrics"]
    finally:
        mv.use(previous)
    assert m["steps"] == 3000 and m["batch_size"] == 128  # the default recipe, not a shortened one
    for name, floor in FLOORS.items():
        assert m[name] >= floor, (name, m[name])
    assert m["retrieval_captions_in_train"] == m["seen_images_in_train"] == 0
