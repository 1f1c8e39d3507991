"""``minivl/checkpoint.py``: a run stopped after k steps and resumed from its
training state (model, optimizer, scheduler, step, RNG) ends with exactly the
weights of the uninterrupted run, dropout included; a model checkpoint
rebuilds its model; the wrong kind of file is refused."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.checkpoint import load_checkpoint, load_training_state, save_checkpoint, save_training_state
from minivl.models.gpt import GPT
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.train import train


def batch(step):
    """Batch ``step`` depends only on the step, as every recipe's batches do."""
    return np.random.default_rng([0, step]).integers(0, 40, (4, 9))


def fresh(steps):
    manual_seed(0)
    model = GPT(vocab_size=40, max_len=16, dim=16, depth=1, num_heads=2, dropout=0.2)  # dropout: RNG matters
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    return model, optimizer, WarmupCosineLR(optimizer, steps, 2)


def run(model, optimizer, scheduler, first, last):
    train(model, lambda m, ids: m.loss(ids), (batch(s) for s in range(first, last)), optimizer,
          last - first, scheduler, progress=False)


@pytest.mark.parametrize("k", [1, 3])
def test_resume_after_k_steps_gives_the_uninterrupted_weights(tmp_path, k):
    model, optimizer, scheduler = fresh(6)
    run(model, optimizer, scheduler, 0, 6)
    straight = model.state_dict()

    model, optimizer, scheduler = fresh(6)
    run(model, optimizer, scheduler, 0, k)
    save_training_state(tmp_path / "run.safetensors", model, optimizer, scheduler, k)
    model, optimizer, scheduler = fresh(6)  # a new process: new weights, new RNG
    manual_seed(123)
    assert load_training_state(tmp_path / "run.safetensors", model, optimizer, scheduler) == k
    run(model, optimizer, scheduler, k, 6)
    for name, value in straight.items():
        np.testing.assert_array_equal(model.state_dict()[name], value, err_msg=name)


def test_model_checkpoints_rebuild_and_refuse_other_kinds(tmp_path):
    model, optimizer, scheduler = fresh(2)
    save_checkpoint(model, tmp_path / "gpt.safetensors", steps=2)
    again = load_checkpoint(GPT, tmp_path / "gpt.safetensors")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)
    with pytest.raises(ValueError, match="not a training state"):
        load_training_state(tmp_path / "gpt.safetensors", model, optimizer, scheduler)
    save_training_state(tmp_path / "state.safetensors", model, optimizer, scheduler, 2)
    assert load_checkpoint(GPT, tmp_path / "state.safetensors").config == model.config
    from minivl.models.vit import ViT

    with pytest.raises(ValueError, match="GPT"):
        load_checkpoint(ViT, tmp_path / "gpt.safetensors")
