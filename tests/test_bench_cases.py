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
    np.testing.assert_allclose(float(got.item()), want.item(), rtol=1e-5)
    # one gradient per twin: the first layer norm's weight, the one parameter both spell alike
    ln = dict(hf.named_parameters())[("gpt." if name == "llava" else "") + "transformer.h.0.ln_1.weight"]
    ours_ln = dict(ours.named_parameters())[("lm." if name == "llava" else "") +
                                           "transformer.encoder.blocks.0.ln_1.weight"]
    np.testing.assert_allclose(ours_ln.grad, ln.grad.numpy(), rtol=1e-3, atol=1e-6)


# one parameter of each part: text stream, visual stream (embedding and blocks), both halves of
# both co-attention blocks, the tied word embedding (input and masked-word head) and the heads
VILBERT_GRADIENTS = ["text_embeddings.token.weight", "text_blocks.0.attn.q_proj.weight",
                     "text_blocks.1.mlp.fc2.weight", "visual_embeddings.location.weight",
                     "visual_blocks.0.attn.v_proj.weight", "visual_blocks.1.mlp.fc1.weight",
                     "co_blocks.0.text.attn.k_proj.weight", "co_blocks.0.visual.attn.q_proj.weight",
                     "co_blocks.1.text.attn.v_proj.weight", "co_blocks.1.visual.mlp.fc2.weight",
                     "text_pooler.weight", "visual_pooler.weight", "region_head.dense.weight"]


def test_vilbert_twin_has_the_same_loss_and_gradients():
    """The plain-torch ViLBERT (no Hugging Face model to lean on) against minivl's, on the
    recipe's three-term pretraining loss."""
    torch.manual_seed(0)
    twin, ours, torch_loss, minivl_loss, torch_in, minivl_in = bench_train.vilbert_case(
        np.random.default_rng(0), batch=4)
    assert sorted(twin.state_dict()) == sorted(ours.state_dict())  # every weight copied by name
    # Away from the initialisation (std 0.02) first: there the layers are nearly linear and the
    # attention nearly uniform, so a wrong GELU form or a wrong mask would hardly show.
    rng = np.random.default_rng(1)
    for p in ours.parameters():
        p.data[...] += 0.1 * rng.standard_normal(p.shape).astype(np.float32)
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    want = torch_loss(*torch_in)
    want.backward()
    got = minivl_loss(*minivl_in)
    got.backward()
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-5)
    theirs, mine = dict(twin.named_parameters()), dict(ours.named_parameters())
    for name in VILBERT_GRADIENTS:  # float32 rounding leaves ~2e-6 of the largest entry
        expected = theirs[name].grad.numpy()
        scale = np.abs(expected).max()
        assert scale > 0, name
        error = np.abs(mine[name].grad - expected).max()
        assert error <= 3e-5 * scale, f"{name}: gradients differ by {error:.3g} (largest entry {scale:.3g})"
