"""Every lecture model trains on a real GPU through minivl's own CUDA kernels
(marked ``gpu``: skipped without CuPy and a device; ``benchmarks/gpu.sh`` runs it).
The models, batches and losses are ``minivl.tiny``'s: GPT, BERT, ViT, CLIP,
ViLBERT, the dVAE, the DALL-E prior and LLaVA.

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
from minivl import backend, tiny

pytestmark = pytest.mark.gpu

STEPS = 3
TRANSFORMER_OPS = {"matmul", "attention_forward", "attention_backward", "layer_norm_forward"}
KERNEL_OPS = {name: TRANSFORMER_OPS for name in tiny.NAMES} | {
    "dvae": {"matmul"},  # all convolutions
    "dalle": {"matmul", "layer_norm_forward", "softmax_forward", "softmax_backward"},  # sparse masks: composed path
}


def _train(device, make, batch, loss_fn):
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


@pytest.mark.parametrize("name", tiny.NAMES)
def test_model_trains_on_the_gpu_to_the_numpy_losses(name, tmp_path):
    from minivl.checkpoint import load_checkpoint, save_checkpoint
    from minivl.device import device_of

    case = tiny.case(name)
    _, _, want = _train("cpu", case.make, case.batch, case.loss)
    model, opt, got = _train("cuda", case.make, case.batch, case.loss)
    served = backend.report()
    assert {source for op, source in served.items() if op != "attention_mask"} == {"cuda"}, served
    assert KERNEL_OPS[name] <= set(served), served
    assert all(device_of(p) == "cuda" for p in model.parameters())
    assert all(device_of(v) == "cuda" for s in opt.state.values() for v in s.values() if hasattr(v, "shape"))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # atol: the dVAE's loss passes near 0
    save_checkpoint(model, tmp_path / "model.safetensors")
    mv.use("numpy")
    back = load_checkpoint(type(model), tmp_path / "model.safetensors")
    for (key, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)


def test_dropout_on_the_gpu_draws_its_mask_on_the_device():
    """The mask is drawn by CuPy (no host draw, no copy): about a fraction p dropped, the
    rest scaled by 1/(1-p), gradients through the same mask, and the same mask again
    after the same manual_seed."""
    import cupy

    mv.use("cuda")

    def run():
        mv.manual_seed(3)
        x = mv.tensor(cupy.ones((256, 512), dtype=cupy.float32), requires_grad=True)
        y = mv.functional.dropout(x, p=0.25)
        y.sum().backward()
        return y.data, x.grad

    y, grad = run()
    assert isinstance(y, cupy.ndarray) and isinstance(grad, cupy.ndarray)
    kept = y != 0
    assert abs(float(kept.mean()) - 0.75) < 0.01
    np.testing.assert_allclose(cupy.asnumpy(y[kept]), 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(cupy.asnumpy(grad), cupy.asnumpy(y))  # d(sum)/dx is the mask itself
    y_again, _ = run()
    np.testing.assert_array_equal(cupy.asnumpy(y_again), cupy.asnumpy(y))
