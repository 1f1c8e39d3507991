"""Every recipe resumes: GPT, BERT (fresh masks per batch, dropout) and ViT
stopped after k steps and resumed from their saved training state end with
the weights of the uninterrupted run. (CLIP: tests/recipes/test_clip.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from minivl.data.corpus import build_corpus
from minivl.recipes.bert import train_bert
from minivl.recipes.gpt import train_gpt
from minivl.recipes.vit import ImageTask, train_vit


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(n_train=200, n_val=40, vocab_size=300, seed=0)


def tiny_task():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, 64)
    return ImageTask("toy", images[:48], labels[:48], images[48:], labels[48:], ("a", "b", "c"), 4)


RECIPES = {
    "gpt": (lambda c, **o: train_gpt(c, block_size=16, dropout=0.1, prompts=("",), **o), "gpt.safetensors"),
    "bert": (lambda c, **o: train_bert(c, **o), "bert.safetensors"),
    "vit": (lambda c, **o: train_vit(tiny_task(), **o), "vit-toy.safetensors"),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_resumed_run_ends_where_the_uninterrupted_one_does(name, corpus, tmp_path):
    recipe, file = RECIPES[name]
    options = dict(steps=5, batch_size=8, dim=16, depth=1, num_heads=2, eval_every=100, progress=False)
    straight = recipe(corpus, **options)["model"].state_dict()
    first = recipe(corpus, stop_after=2, out=tmp_path, **options)
    assert first["metrics"]["steps"] == 2
    resumed = recipe(corpus, resume=tmp_path / file, **options)
    assert resumed["history"].steps == [3, 4, 5]
    for key, value in straight.items():
        np.testing.assert_allclose(resumed["model"].state_dict()[key], value, rtol=1e-6, atol=1e-7,
                                   err_msg=key)
