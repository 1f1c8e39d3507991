"""The training-step benchmark's twins (benchmarks/bench_train.py): each minivl model and its
PyTorch twin hold the same weights and give the same loss and gradients before anything is
timed, so the speed ratios compare like with like."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_train  # noqa: E402


@pytest.mark.parametrize("name", ["dalle", "llava"])
def test_new_models_twins_have_the_same_loss_and_gradients(name):
    torch.manual_seed(0)
    hf, ours, torch_loss, minivl_loss, torch_in, minivl_in = bench_train.CASES[name][0](
        np.random.default_rng(0), batch=2)
    want = torch_loss(*torch_in)
    want.backward()
    got = minivl_loss(*minivl_in)
    got.backward()
    np.testing.assert_allclose(float(got.item()), float(want), rtol=1e-5)
    # one gradient per twin: the first layer norm's weight, the one parameter both spell alike
    ln = dict(hf.named_parameters())[("gpt." if name == "llava" else "") + "transformer.h.0.ln_1.weight"]
    ours_ln = dict(ours.named_parameters())[("lm." if name == "llava" else "") +
                                           "transformer.encoder.blocks.0.ln_1.weight"]
    np.testing.assert_allclose(ours_ln.grad, ln.grad.numpy(), rtol=1e-3, atol=1e-6)
