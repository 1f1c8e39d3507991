"""Every lecture model trains on a real GPU through minivl's own CUDA kernels
(marked ``gpu``: skipped without CuPy and a device; ``benchmarks/gpu.sh`` runs it).

The model moves with ``model.to("cuda")``, each batch with ``mv.to_device``,
and three AdamW steps must give the NumPy backend's losses (rtol 1e-4: the
kernels sum in another order, in float32), with every kernel op served by
the ``cuda`` backend, the parameters and AdamW's moments left on the device,
and the checkpoint written from device arrays reloading on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import minivl as mv
import minivl.functional as F
from minivl import backend

pytestmark = pytest.mark.gpu

STEPS = 3


def _tiny(name):
    """``(model factory, batch (host arrays), loss(model, batch))`` of one tiny model."""
    rng = np.random.default_rng(0)
    if name == "gpt":
        from minivl.models.gpt import GPT

        return (lambda: GPT(vocab_size=50, max_len=16, dim=32, depth=2, num_heads=2),
                (rng.integers(0, 50, (4, 16)),), lambda m, ids: m.loss(ids))
    if name == "bert":
        from minivl.models.bert import BERT, mlm_loss

        ids = rng.integers(5, 50, (4, 16))
        labels = np.where(rng.random((4, 16)) < 0.3, ids, -100)
        return (lambda: BERT(vocab_size=50, max_len=16, dim=32, depth=2, num_heads=2, dropout=0.0),
                (ids, labels), lambda m, ids, labels: mlm_loss(m.mlm_logits(ids), labels))
    if name == "vit":
        from minivl.models.vit import ViT

        images = rng.standard_normal((8, 1, 16, 16)).astype(np.float32)
        return (lambda: ViT(num_classes=4, image_size=16, patch_size=4, dim=32, depth=2, num_heads=2),
                (images, rng.integers(0, 4, 8)), lambda m, x, y: F.cross_entropy(m(x), y))
    from minivl.models.clip import CLIP

    ids = rng.integers(1, 49, (4, 8))
    ids[:, -1] = 49
    return (lambda: CLIP(embed_dim=16, image_size=16, patch_size=8, vision_dim=32, vision_depth=1,
                         vision_heads=2, vocab_size=50, context_length=8, text_dim=32, text_depth=1,
                         text_heads=2),
            (rng.standard_normal((4, 3, 16, 16)).astype(np.float32), ids),
            lambda m, images, ids: m.loss(images, ids))


def _train(name, device, make, batch, loss_fn):
    from minivl.optim import AdamW

    mv.use("numpy" if device == "cpu" else "cuda")
    mv.manual_seed(0)
    model = make().to(device)
    opt = AdamW(model.parameters(), lr=1e-2)
    batch = mv.to_device(batch, device)
    losses = []
    for _ in range(STEPS):
        loss = loss_fn(model, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return model, opt, losses


@pytest.mark.parametrize("name", ["gpt", "bert", "vit", "clip"])
def test_model_trains_on_the_gpu_to_the_numpy_losses(name, tmp_path):
    from minivl.checkpoint import load_checkpoint, save_checkpoint
    from minivl.device import device_of

    make, batch, loss_fn = _tiny(name)
    _, _, want = _train(name, "cpu", make, batch, loss_fn)
    model, opt, got = _train(name, "cuda", make, batch, loss_fn)
    served = backend.report()
    assert set(served.values()) == {"cuda"}, served
    assert {"matmul", "attention_forward", "attention_backward", "layer_norm_forward"} <= set(served)
    assert all(device_of(p) == "cuda" for p in model.parameters())
    assert all(device_of(v) == "cuda" for s in opt.state.values() for v in s.values() if hasattr(v, "shape"))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    save_checkpoint(model, tmp_path / "model.safetensors")
    mv.use("numpy")
    back = load_checkpoint(type(model), tmp_path / "model.safetensors")
    for (key, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)
