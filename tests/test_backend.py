"""The backend switch: the same model trains to the same losses on numpy and
numba; ops without a fast kernel fall back to the reference; report() says
who served each op."""

from __future__ import annotations

import numpy as np
import pytest

import minivl as mv
from minivl import backend

pytest.importorskip("numba")


def _losses(name, steps=4):
    from minivl.models.gpt import GPT
    from minivl.optim import AdamW

    mv.use(name)
    mv.manual_seed(0)
    model = GPT(vocab_size=50, max_len=16, dim=32, depth=2, num_heads=4)
    opt = AdamW(model.parameters(), lr=1e-2)
    ids = np.random.default_rng(0).integers(0, 50, (4, 13))
    out = []
    for _ in range(steps):
        loss = model.loss(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out, backend.report()


def test_same_losses_on_numpy_and_numba():
    ref, served_ref = _losses("numpy")
    fast, served_fast = _losses("numba")
    np.testing.assert_allclose(fast, ref, rtol=2e-5)
    assert set(served_ref.values()) == {"numpy"}
    # the MLP's GELU runs as the fused bias_gelu op on numba (nn/transformer.py::MLP)
    for op in ("matmul", "layer_norm_forward", "attention_forward", "attention_backward", "bias_gelu_forward"):
        assert served_fast[op] == "numba", served_fast


def test_missing_kernel_falls_back_to_reference(monkeypatch):
    from minivl.kernels.numba import KERNELS

    partial = backend.Backend.build("numba", {op: fn for op, fn in KERNELS.items() if op != "softmax_forward"})
    assert partial.fallbacks() == ("softmax_forward", "attention_mask")
    assert partial.softmax_backward.source == "numba"
    monkeypatch.setitem(backend._backends, "numba", partial)
    mv.use("numba")
    x = mv.tensor(np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32), requires_grad=True)
    y = mv.functional.softmax(x)
    (y * y).sum().backward()
    assert backend.report() == {"softmax_forward": "numpy", "softmax_backward": "numba"}
    np.testing.assert_allclose(y.data.sum(-1), 1.0, rtol=1e-6)


def test_every_backend_lists_every_reference_op():
    """The Backend fields and the reference's exports are the same list, so no op
    can be added to one and forgotten in the other."""
    from minivl.kernels import reference

    for op in backend.Backend.ops():
        assert callable(getattr(reference, op)), op
    numpy = backend.get("numpy")
    assert numpy.name == "numpy" and numpy.fallbacks() == ()
    assert all(getattr(numpy, op).fn is getattr(reference, op) for op in backend.Backend.ops())


def test_a_table_with_an_unknown_op_is_rejected():
    with pytest.raises(ValueError, match="softmax_fwd"):
        backend.Backend.build("numba", {"softmax_fwd": np.exp})


def test_cuda_backend_serves_every_kernel_op_itself():
    cuda = backend.get("cuda")
    assert cuda.fallbacks() == ("attention_mask",)


def test_cupy_arrays_go_to_cuda_whatever_is_active():
    class FakeDeviceArray:
        __cuda_array_interface__ = {}

    assert backend.for_array(FakeDeviceArray()).name == "cuda"
    assert backend.for_array(np.zeros(2)).name == "numpy"


def test_use_rejects_unknown_backends():
    with pytest.raises(ValueError, match="numpy"):
        mv.use("tpu")


def test_available_lists_numpy_and_numba():
    avail = backend.available()
    assert avail["numpy"] and avail["numba"]
    assert "cuda" in avail
