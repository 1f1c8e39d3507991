"""The CUDA backend end to end, on the CPU: ``minivl.use("cuda")`` inside
``emulate.on_cpu()`` trains a tiny GPT, CLIP, BERT and ViT with every kernel op
served by the ``.cu`` sources (built as host C++, see
``kernels/cuda/emulate.py``), to the losses of the NumPy backend.

Tolerance: the kernels sum in another order than NumPy's BLAS and reductions,
in float32; after a few AdamW steps the losses agree to rtol 1e-5 (measured:
5 steps, GPT identical, CLIP within 1e-6 relative). Dimensions are tiny
because the emulator runs every CUDA thread as a fiber (a few hundred kernel
launches per model, about a second each run).
"""

from __future__ import annotations

import numpy as np
import pytest
from minivl.kernels.cuda import emulate

import minivl as mv
import minivl.functional as F
from minivl import backend, tiny

pytestmark = pytest.mark.skipif(not emulate.available(), reason=f"the emulator needs a C++ compiler ({emulate.CXX})")

STEPS = 5
RTOL = 1e-5


def _train(name, make_model, loss_of_batch):
    """Losses of ``STEPS`` AdamW steps from seed 0 on backend ``name``, and ``report()``."""
    from minivl.optim import AdamW

    mv.use(name)
    mv.manual_seed(0)
    model = make_model().to("cuda" if name == "cuda" else "cpu")  # as on a GPU: the model moves first
    opt = AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(STEPS):
        loss = loss_of_batch(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, backend.report()


def _on_numpy_and_emulated_cuda(make_model, loss_of_batch):
    want, _ = _train("numpy", make_model, loss_of_batch)
    emulate.build()
    with emulate.on_cpu():
        got, served = _train("cuda", make_model, loss_of_batch)
    return want, got, served


def _gpt():
    from minivl.models.gpt import GPT

    return GPT(vocab_size=20, max_len=8, dim=16, depth=1, num_heads=2)


def _clip():
    from minivl.models.clip import CLIP

    return CLIP(embed_dim=8, image_size=16, patch_size=8, vision_dim=16, vision_depth=1, vision_heads=2,
                vocab_size=20, context_length=8, text_dim=16, text_depth=1, text_heads=2)


def _clip_batch():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    ids = rng.integers(1, 19, (4, 8))
    ends = np.array([3, 7, 5, 2])
    ids[np.arange(4), ends] = 19  # the last id plays end-of-text
    mask = np.arange(8)[None] <= ends[:, None]
    ids[~mask] = 0
    return images, ids, mask


# the MLPs' GELU runs as GELU(x + bias), fused (nn/transformer.py::MLP)
FUSED_OPS = {"matmul", "layer_norm_forward", "layer_norm_backward", "bias_gelu_forward", "bias_gelu_backward",
             "attention_forward", "attention_backward", "log_softmax_forward"}


def test_tiny_gpt_trains_to_the_numpy_losses_on_the_emulated_cuda_kernels():
    ids = np.random.default_rng(0).integers(0, 20, (2, 8))
    want, got, served = _on_numpy_and_emulated_cuda(_gpt, lambda model: model.loss(ids))
    assert set(served.values()) == {"cuda"}, served
    assert set(served) == FUSED_OPS
    np.testing.assert_allclose(got, want, rtol=RTOL)
    assert want[-1] < want[0]  # it trains


def test_tiny_clip_trains_to_the_numpy_losses_on_the_emulated_cuda_kernels():
    images, ids, mask = _clip_batch()
    want, got, served = _on_numpy_and_emulated_cuda(_clip, lambda model: model.loss(images, ids, mask))
    assert set(served.values()) == {"cuda"}, served
    assert FUSED_OPS <= set(served), served  # key padding masks reach the fused attention kernels
    np.testing.assert_allclose(got, want, rtol=RTOL)
    assert want[-1] < want[0]


def _bert():
    from minivl.models.bert import BERT

    return BERT(vocab_size=20, max_len=8, dim=16, depth=1, num_heads=2, dropout=0.0)


def test_tiny_bert_trains_to_the_numpy_losses_on_the_emulated_cuda_kernels():
    """Post-LN blocks, the exact-erf GELU, padding masks and the tied MLM head."""
    from minivl.models.bert import mlm_loss

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 20, (2, 8))
    labels = np.where(rng.random((2, 8)) < 0.5, ids, -100)
    labels[0, 0] = ids[0, 0]  # at least one masked position
    mask = np.ones((2, 8), dtype=bool)
    mask[1, 6:] = False

    def loss(model):
        return mlm_loss(model.mlm_logits(ids, key_padding_mask=mask), labels)

    want, got, served = _on_numpy_and_emulated_cuda(_bert, loss)
    assert set(served.values()) == {"cuda"}, served
    assert FUSED_OPS <= set(served), served
    np.testing.assert_allclose(got, want, rtol=RTOL)
    assert want[-1] < want[0]


def _vit():
    from minivl.models.vit import ViT

    return ViT(num_classes=3, image_size=8, patch_size=4, in_channels=1, dim=16, depth=1, num_heads=2)


def test_tiny_vit_trains_to_the_numpy_losses_on_the_emulated_cuda_kernels():
    """Patch embedding (a strided conv as a matmul), the erf GELU and the [CLS] classifier."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    want, got, served = _on_numpy_and_emulated_cuda(_vit, lambda model: F.cross_entropy(model(images), labels))
    assert set(served.values()) == {"cuda"}, served
    assert FUSED_OPS <= set(served), served
    np.testing.assert_allclose(got, want, rtol=RTOL)
    assert want[-1] < want[0]


# ops each model must send to the CUDA kernels (attention_mask, the allowed-pairs helper of
# the composed attention path, is the reference's on every backend: see minivl/backend.py)
NEW_MODEL_OPS = {
    "vilbert": FUSED_OPS | {"gelu_forward", "gelu_backward", "log_softmax_backward"},  # the KL region loss
    "dvae": {"matmul", "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward"},
    "dalle": {"matmul", "layer_norm_forward", "softmax_forward", "softmax_backward"},  # sparse masks: composed path
    "llava": FUSED_OPS,
}


@pytest.mark.parametrize("name", sorted(NEW_MODEL_OPS))
def test_vilbert_dalle_and_llava_train_to_the_numpy_losses_on_the_emulated_cuda_kernels(name):
    """The models of S03-S11 (ViLBERT: co-attention, all three pretraining terms), S21-S26 (the
    dVAE's ELBO, the DALL-E prior with sparse masks) and S29-S33 (LLaVA's answer loss),
    from ``minivl.tiny``, the same cases the real-GPU test trains."""
    case = tiny.case(name)
    want, got, served = _on_numpy_and_emulated_cuda(case.make, lambda model: case.loss(model, *case.batch))
    assert {source for op, source in served.items() if op != "attention_mask"} == {"cuda"}, served
    assert NEW_MODEL_OPS[name] <= set(served), served
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)  # atol: the dVAE's loss passes near 0
    assert want[-1] < want[0]


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_over_a_leading_axis_matches_numpy_on_the_emulated_cuda_kernels(op):
    """The ops the models above leave out (softmax forward/backward, log-softmax
    backward), over axis 0 of a 3-D tensor: the axis moves last for the kernel and back."""
    x0 = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32)

    def run():
        x = mv.tensor(x0, requires_grad=True)
        y = op(x, axis=0)
        (y * mv.tensor(w)).sum().backward()
        return y.data, x.grad

    mv.use("numpy")
    y_want, g_want = run()
    with emulate.on_cpu():
        mv.use("cuda")
        y_got, g_got = run()
        served = backend.report()
    assert y_got.shape == (3, 4, 5)
    np.testing.assert_allclose(y_got, y_want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-5, atol=1e-6)
    stem = op.__name__
    assert served == {f"{stem}_forward": "cuda", f"{stem}_backward": "cuda"}


def test_a_model_trained_on_the_emulated_cuda_backend_checkpoints_to_the_host(tmp_path):
    """model.to("cuda"), a batch moved with to_device, two AdamW steps; the saved
    training state (weights and AdamW moments) reloads on the CPU to the same loss."""
    from minivl.checkpoint import load_training_state, save_training_state
    from minivl.models.gpt import GPT
    from minivl.optim import AdamW, flatten_state_dict

    ids = np.random.default_rng(0).integers(0, 20, (2, 8))
    emulate.build()
    with emulate.on_cpu():
        mv.use("cuda")
        mv.manual_seed(0)
        model = _gpt().to("cuda")
        opt = AdamW(model.parameters(), lr=1e-2)
        batch = mv.to_device(ids, "cuda")
        for _ in range(2):
            loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        save_training_state(tmp_path / "state.safetensors", model, opt, None, step=2)
        want = model.loss(batch).item()
    mv.use("numpy")
    fresh = GPT(model.config)
    fresh_opt = AdamW(fresh.parameters(), lr=1e-2)
    assert load_training_state(tmp_path / "state.safetensors", fresh, fresh_opt, None) == 2
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    saved, loaded = flatten_state_dict(opt.state_dict()), flatten_state_dict(fresh_opt.state_dict())
    assert saved.keys() == loaded.keys()
    for key in saved:
        np.testing.assert_array_equal(saved[key], loaded[key], err_msg=key)
    assert isinstance(fresh.parameters()[0].data, np.ndarray)
    np.testing.assert_allclose(fresh.loss(ids).item(), want, rtol=1e-5)
