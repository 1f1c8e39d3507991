"""Every CUDA kernel against the NumPy reference math (``kernels/reference.py``).

Each test runs twice, MiniTorch style -- one list of tests, every backend:
* ``gpu``: CuPy on a CUDA device (marked ``gpu``; skipped without CuPy or a device);
* ``emulated``: the same ``.cu`` sources built as host C++ and run on CPU fibers
  (``minivl.kernels.cuda.emulate``; skipped without a C++ compiler). The
  emulator also rejects launches whose arguments do not match the kernel's C
  parameter types, non-contiguous array arguments and writes outside outputs.

Shapes are not tile multiples (1, 7, 33, 127, 257, ...), inputs include
non-contiguous views, large magnitudes, -inf rows and fully masked attention.
Fixed cases reach what small drawn shapes miss: SGEMM grids of several 128 x 128
tiles, rows of several warps (129, 513 columns), layer-norm gradients over
several row slabs and the slab cap, and sharp softmaxes (|q| ~ 30) in attention.
Tolerances, as max |got - want| <= atol + rtol |want|:
* float32: rtol 1e-5, atol 1e-5 times the data's scale (matmul: 2e-6 K; attention
  gradients 1e-4); float64: rtol = atol = 1e-11;
* tensor-core attention against the reference on the same rounded inputs:
  fp16 atol 4e-3, bf16 atol 3e-2 (P and O are rounded to 16 bits).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import cuda, reference
from minivl.kernels.cuda import attention_ladder, emulate, loader, sgemm

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-11}


@dataclass
class Device:
    name: str
    put: object  # host NumPy array -> device array
    get: object  # device array -> host NumPy array
    sizes: tuple[int, ...]  # sizes hypothesis draws from (smaller when emulated: it is slow)


@pytest.fixture(scope="module", params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "gpu":
        cupy = pytest.importorskip("cupy", reason="the gpu tests need CuPy")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception:  # noqa: BLE001 - no driver is the same as no device
            count = 0
        if count == 0:
            pytest.skip("the gpu tests need a CUDA device")
        yield Device("gpu", cupy.asarray, cupy.asnumpy, (1, 7, 33, 64, 127, 129, 257))
    else:
        if not emulate.available():
            pytest.skip(f"the CPU emulation needs a C++ compiler ({emulate.CXX})")
        emulate.build()
        with emulate.on_cpu():
            yield Device("emulated", np.array, np.asarray, (1, 7, 33, 64, 100))


def draw_rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def assert_close(got, want, dtype, scale=1.0, **kwargs):
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(got, want, rtol=kwargs.get("rtol", tol), atol=kwargs.get("atol", tol * scale))


def maybe_strided(device, host, data):
    """``host`` on the device, either contiguous or as a strided view of a wider array."""
    if not data.draw(st.booleans(), label="non-contiguous"):
        return device.put(host)
    wide = np.zeros((*host.shape[:-1], 2 * host.shape[-1]), dtype=host.dtype)
    wide[..., ::2] = host
    view = device.put(wide)[..., ::2]
    assert not view.flags.c_contiguous or host.shape[-1] <= 1
    return view


# --------------------------------------------------------------------------- plumbing (no device)


def test_kernels_table_has_the_reference_signatures():
    for name, fn in cuda.KERNELS.items():
        want = list(inspect.signature(getattr(reference, name)).parameters)
        got = list(inspect.signature(fn).parameters)
        assert got[: len(want)] == want, name
        assert all(inspect.signature(fn).parameters[p].default is not inspect.Parameter.empty
                   for p in got[len(want):]), name


def test_importing_the_package_does_not_import_cupy():
    code = "import sys, minivl.kernels.cuda as c; assert 'cupy' not in sys.modules; print(sorted(c.KERNELS))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "attention_forward" in result.stdout


# --------------------------------------------------------------------------- matmul


@pytest.mark.parametrize("version", sorted(sgemm.VERSIONS))
@settings(max_examples=6)
@given(data=st.data())
def test_matmul_every_version_matches_numpy(device, version, data):
    M, K, N = (data.draw(st.sampled_from(device.sizes), label=axis) for axis in "MKN")
    rng = draw_rng(data)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    got = device.get(cuda.matmul(maybe_strided(device, a, data), device.put(b), version=version))
    want = reference.matmul(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6 * K)


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((3, 5, 7), (7, 4)), ((2, 1, 5, 7), (3, 7, 4)), ((2, 5, 8), (2, 8, 3)), ((7,), (7, 4)), ((5, 7), (7,)),
     ((7,), (7,)), ((1, 12), (12, 1)), ((0, 5), (5, 3)), ((4, 0), (0, 3))],
)
def test_matmul_batches_and_broadcasts_like_numpy(device, shape_a, shape_b):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    got = device.get(cuda.matmul(device.put(a), device.put(b)))
    want = reference.matmul(a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", [6, 7, 8])
def test_matmul_float4_kernels_take_the_scalar_path_when_they_must(device, version, monkeypatch):
    launched = []
    get_function = loader.get_function
    monkeypatch.setattr(loader, "get_function", lambda f, n: launched.append(n) or get_function(f, n))
    rng = np.random.default_rng(1)
    a = rng.standard_normal((33, 16)).astype(np.float32)
    b = rng.standard_normal((16, 12)).astype(np.float32)
    flat = device.put(np.concatenate([[0.0], a.ravel()]).astype(np.float32))
    cases = [
        (device.put(a), device.put(b), "<true>"),            # K, N multiples of 4, aligned
        (flat[1:].reshape(33, 16), device.put(b), "<false>"),  # A starts 4 bytes past a 16-byte boundary
        (device.put(a[:, :15]), device.put(b[:15]), "<false>"),  # K = 15
    ]
    for a_dev, b_dev, path in cases:
        launched.clear()
        got = device.get(cuda.matmul(a_dev, b_dev, version=version))
        host_a, host_b = device.get(a_dev), device.get(b_dev)
        np.testing.assert_allclose(got, host_a @ host_b, rtol=1e-5, atol=1e-4)
        assert launched and launched[-1].endswith(path), launched


@pytest.mark.parametrize("version", [5, 6, 7, 8])
@pytest.mark.parametrize("M, K, N", [(129, 8, 257), (257, 7, 129), (130, 16, 260), (300, 12, 8), (8, 20, 300)])
def test_matmul_blocktiled_versions_span_several_tiles(device, version, M, K, N, monkeypatch):
    """Grids of several 128 x 128 tiles, wider than tall and taller than wide,
    on the float4 path whenever K and N are multiples of 4."""
    launched = []
    get_function = loader.get_function
    monkeypatch.setattr(loader, "get_function", lambda f, n: launched.append(n) or get_function(f, n))
    rng = np.random.default_rng(M * N + K)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    got = device.get(cuda.matmul(device.put(a), device.put(b), version=version))
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-5, atol=2e-6 * K)
    if sgemm.VERSIONS[version].vectorised:
        assert launched[-1].endswith("<true>" if K % 4 == 0 and N % 4 == 0 else "<false>"), launched


def test_matmul_rejects_bad_input(device):
    a = device.put(np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        cuda.matmul(device.put(np.ones((3, 4))), a.T)
    with pytest.raises(AssertionError, match="inner size"):
        cuda.matmul(a, a)
    with pytest.raises(ValueError, match="version"):
        cuda.matmul(a, a.T, version=9)
    if device.name == "gpu":
        with pytest.raises(TypeError, match="array on the GPU"):
            cuda.matmul(np.ones((3, 4), np.float32), a.T)


# --------------------------------------------------------------------------- softmax


@given(data=st.data())
def test_softmax_family_matches_reference(device, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2), label="lead"))
    cols = data.draw(st.sampled_from(device.sizes), label="cols")
    scale = data.draw(st.sampled_from([1.0, 1e3]), label="magnitude")
    rng = draw_rng(data)
    x = (rng.standard_normal((*lead, cols)) * scale).astype(dtype)
    x[rng.random(x.shape) < 0.1] = -np.inf  # masked entries
    x.reshape(-1, cols)[rng.random(x.size // cols) < 0.3] = -np.inf  # fully masked rows
    dead = np.isneginf(x).all(axis=-1)
    dy = rng.standard_normal(x.shape).astype(dtype)
    x_dev = maybe_strided(device, x, data)

    y = device.get(cuda.softmax_forward(x_dev))
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, reference.softmax_forward(x), dtype)
    assert (y[dead] == 0).all()

    log_y = device.get(cuda.log_softmax_forward(x_dev))
    assert_close(log_y[~dead], reference.log_softmax_forward(x[~dead]), dtype, scale)
    assert np.isneginf(log_y[dead]).all()  # log of the zeros, where the reference has NaN

    want = reference.softmax_backward(y, dy)
    assert_close(device.get(cuda.softmax_backward(device.put(y), device.put(dy))), want, dtype)
    want = reference.log_softmax_backward(log_y, dy)
    got = device.get(cuda.log_softmax_backward(device.put(log_y), maybe_strided(device, dy, data)))
    assert_close(got, want, dtype, scale=float(np.abs(dy).sum(axis=-1).max(initial=1.0)))


@pytest.mark.parametrize("cols", [129, 513])
def test_softmax_family_spans_several_warps(device, cols):
    """129 columns run on two warps, 513 on five: every warp's partial statistics count."""
    rng = np.random.default_rng(cols)
    x = (4 * rng.standard_normal((3, cols))).astype(np.float32)
    x[1, : cols // 2] = -np.inf  # the first warps of a row see only -inf
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = device.get(cuda.softmax_forward(device.put(x)))
    assert_close(y, reference.softmax_forward(x), np.float32)
    assert_close(device.get(cuda.log_softmax_forward(device.put(x)))[0], reference.log_softmax_forward(x)[0],
                 np.float32, 4.0)
    assert_close(device.get(cuda.softmax_backward(device.put(y), device.put(dy))),
                 reference.softmax_backward(y, dy), np.float32)
    log_y = reference.log_softmax_forward(x[:1])
    assert_close(device.get(cuda.log_softmax_backward(device.put(log_y), device.put(dy[:1]))),
                 reference.log_softmax_backward(log_y, dy[:1]), np.float32, float(np.abs(dy[0]).sum()))


class ForeignArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array that is not a ``np.ndarray``, as a CuPy array is not: NumPy's
    functions and operators reach it through ``__array_function__`` and
    ``__array_ufunc__`` (NEP 18 and 13, as they reach CuPy) and hand back
    another ForeignArray. It lets a CPU test walk the CuPy branches of code
    that asks ``isinstance(x, np.ndarray)``."""

    def __init__(self, data):
        self.data = np.asarray(data)

    def __getattr__(self, name):  # shape, dtype, ... and methods: x.astype(), x.swapaxes()
        attr = getattr(self.data, name)
        return (lambda *args, **kwargs: self._call(attr, args, kwargs)) if callable(attr) else attr

    @staticmethod
    def _unwrap(x):
        if isinstance(x, (list, tuple)):
            return type(x)(ForeignArray._unwrap(e) for e in x)
        return x.data if isinstance(x, ForeignArray) else x

    @staticmethod
    def _call(fn, args, kwargs):
        out = fn(*ForeignArray._unwrap(args), **{k: ForeignArray._unwrap(v) for k, v in kwargs.items()})
        return ForeignArray(out) if isinstance(out, np.ndarray) else out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return self._call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return self._call(func, args, kwargs)


@pytest.mark.parametrize("shape, axis", [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4, 5), 1), ((3, 4), 0)])
def test_softmax_along_any_axis_of_a_device_array(shape, axis):
    """F.softmax / F.log_softmax move ``axis`` last for the kernel and back; a
    CuPy array (here its stand-in) takes the same way as a NumPy array."""
    from minivl.functional.softmax import LogSoftmax, Softmax
    from minivl.tensor import Context

    rng = np.random.default_rng(0)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    for op, forward, backward in ((Softmax, reference.softmax_forward, reference.softmax_backward),
                                  (LogSoftmax, reference.log_softmax_forward, reference.log_softmax_backward)):
        ctx = Context(op, ())
        y = op.forward(ctx, ForeignArray(x), axis=axis)
        want = np.moveaxis(forward(np.moveaxis(x, axis, -1)), -1, axis)
        assert isinstance(y, ForeignArray) and y.shape == x.shape
        np.testing.assert_allclose(y.data, want, rtol=1e-12)
        dx = op.backward(ctx, ForeignArray(g))
        want = np.moveaxis(backward(np.moveaxis(want, axis, -1), np.moveaxis(g, axis, -1)), -1, axis)
        np.testing.assert_allclose(dx.data, want, rtol=1e-12, atol=1e-15)


@pytest.mark.gpu
def test_softmax_along_a_leading_axis_of_a_cupy_tensor():
    cupy = pytest.importorskip("cupy", reason="needs CuPy")
    import minivl.functional as F
    from minivl.tensor import Tensor

    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y = F.softmax(Tensor(cupy.asarray(x)), axis=0)
    want = np.moveaxis(reference.softmax_forward(np.moveaxis(x, 0, -1)), -1, 0)
    assert y.shape == x.shape
    np.testing.assert_allclose(cupy.asnumpy(y.data), want, rtol=1e-5, atol=1e-6)


def test_softmax_rejects_bad_input(device):
    with pytest.raises(TypeError, match="dtype"):
        cuda.softmax_forward(device.put(np.ones(3, np.int32)))
    with pytest.raises(AssertionError, match="same shape"):
        cuda.softmax_backward(device.put(np.ones((2, 3))), device.put(np.ones((3, 2))))
    with pytest.raises(TypeError, match="dtype"):
        cuda.softmax_backward(device.put(np.ones(3)), device.put(np.ones(3, np.float32)))


# --------------------------------------------------------------------------- layer norm


@given(data=st.data())
def test_layer_norm_matches_reference(device, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    lead = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=2), label="lead"))
    cols = data.draw(st.sampled_from(device.sizes), label="cols")
    offset = data.draw(st.sampled_from([0.0, 1e3]), label="offset")  # two-pass variance must hold up
    rng = draw_rng(data)
    x = (offset + 2 * rng.standard_normal((*lead, cols))).astype(dtype)
    gamma, beta = rng.standard_normal(cols).astype(dtype), rng.standard_normal(cols).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    x_dev = maybe_strided(device, x, data)

    y, mean, rstd = (device.get(t) for t in cuda.layer_norm_forward(x_dev, device.put(gamma), device.put(beta)))
    y_ref, mean_ref, rstd_ref = reference.layer_norm_forward(x, gamma, beta)
    relative = 1.0 + offset / 2  # inputs are known to about eps * |x|, i.e. eps * offset / std in xhat
    assert_close(y, y_ref, dtype, relative * float(np.abs(gamma).max()))
    assert_close(mean, mean_ref, dtype, 1.0 + offset)
    assert_close(rstd, rstd_ref, dtype, relative)

    grads = cuda.layer_norm_backward(device.put(dy), x_dev, device.put(gamma), device.put(mean_ref),
                                     device.put(rstd_ref))
    want = reference.layer_norm_backward(dy, x, gamma, mean_ref, rstd_ref)
    rows = x.size // cols
    for got, ref, scale in zip(grads, want, (relative * 2, relative * rows, rows)):
        assert_close(device.get(got), ref, dtype, scale)


@pytest.mark.parametrize("rows, cols", [(3, 129), (3, 513), (40, 33), (1100, 33)])
def test_layer_norm_spans_several_warps_and_slabs(device, rows, cols):
    """129 and 513 columns: several warps per row. dgamma and dbeta sum over rows
    in slabs of 16: 40 rows are three slabs; 1100 rows reach the cap of 64
    slabs, so each slab block walks its rows more than once."""
    rng = np.random.default_rng(rows * cols)
    x = (3 + 2 * rng.standard_normal((rows, cols))).astype(np.float32)
    gamma, beta, dy = (rng.standard_normal(shape).astype(np.float32) for shape in (cols, cols, x.shape))
    y, mean, rstd = (device.get(t) for t in cuda.layer_norm_forward(device.put(x), device.put(gamma),
                                                                    device.put(beta)))
    want = reference.layer_norm_forward(x, gamma, beta)
    for got, ref, scale in zip((y, mean, rstd), want, (4.0, 4.0, 1.0)):
        assert_close(got, ref, np.float32, scale)
    grads = cuda.layer_norm_backward(device.put(dy), device.put(x), device.put(gamma), device.put(want[1]),
                                     device.put(want[2]))
    want = reference.layer_norm_backward(dy.astype(np.float64), x.astype(np.float64), gamma, want[1], want[2])
    for got, ref, scale in zip(grads, want, (4.0, np.sqrt(rows), np.sqrt(rows))):
        assert_close(device.get(got), ref, np.float32, scale)


def test_layer_norm_rejects_mismatched_parameters(device):
    x = device.put(np.ones((2, 5)))
    with pytest.raises(AssertionError, match="gamma must have shape"):
        cuda.layer_norm_forward(x, device.put(np.ones(4)), device.put(np.ones(5)))
    with pytest.raises(TypeError, match="dtype"):
        cuda.layer_norm_forward(x, device.put(np.ones(5, np.float32)), device.put(np.ones(5)))


# --------------------------------------------------------------------------- GELU


@given(data=st.data())
def test_gelu_matches_reference(device, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    approximate = data.draw(st.sampled_from(["none", "tanh", "sigmoid"]), label="approximate")
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2), label="lead"))
    shape = (*lead, data.draw(st.sampled_from(device.sizes), label="cols"))
    scale = data.draw(st.sampled_from([1.0, 8.0, 80.0]), label="magnitude")  # 80: every form saturates
    rng = draw_rng(data)
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    x_dev = maybe_strided(device, x, data)
    assert_close(device.get(cuda.gelu_forward(x_dev, approximate)), reference.gelu_forward(x, approximate),
                 dtype, scale)
    assert_close(device.get(cuda.gelu_backward(x_dev, device.put(dy), approximate)),
                 reference.gelu_backward(x, dy, approximate), dtype, scale)


@given(data=st.data())
def test_bias_gelu_matches_reference(device, data):
    """GELU(x + bias) and (dx, dbias); 130 rows span three dbias chunks of 64."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    approximate = data.draw(st.sampled_from(["none", "tanh", "sigmoid"]), label="approximate")
    lead = data.draw(st.sampled_from([(1,), (3, 2), (130,)]), label="lead")
    cols = data.draw(st.sampled_from(device.sizes), label="cols")
    scale = data.draw(st.sampled_from([1.0, 8.0]), label="magnitude")
    rng = draw_rng(data)
    x = (scale * rng.standard_normal((*lead, cols))).astype(dtype)
    bias = rng.standard_normal(cols).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    x_dev, b_dev = maybe_strided(device, x, data), device.put(bias)
    assert_close(device.get(cuda.bias_gelu_forward(x_dev, b_dev, approximate)),
                 reference.bias_gelu_forward(x, bias, approximate), dtype, scale)
    dx, db = cuda.bias_gelu_backward(x_dev, b_dev, device.put(dy), approximate)
    dx_want, db_want = reference.bias_gelu_backward(x, bias, dy, approximate)
    assert_close(device.get(dx), dx_want, dtype, scale)
    rows = int(np.prod(lead))
    assert_close(device.get(db), db_want, dtype, scale * np.sqrt(rows))


def test_gelu_rejects_unknown_form(device):
    with pytest.raises(ValueError, match="approximate"):
        cuda.gelu_forward(device.put(np.ones(3)), "erf")
    with pytest.raises(ValueError, match="approximate"):
        cuda.gelu_backward(device.put(np.ones(3)), device.put(np.ones(3)), "quick")


# --------------------------------------------------------------------------- attention


def draw_attention_case(device, data, head_dims, dtype=np.float32):
    B, H = data.draw(st.integers(1, 2), label="B"), data.draw(st.integers(1, 2), label="H")
    Nq = data.draw(st.sampled_from(device.sizes), label="Nq")
    Nk = data.draw(st.sampled_from(device.sizes), label="Nk")
    D = data.draw(st.sampled_from(head_dims), label="D")
    causal = data.draw(st.booleans(), label="causal")
    scale = data.draw(st.sampled_from([None, 0.3]), label="scale")
    rng = draw_rng(data)
    q, k, v = (rng.standard_normal((B, H, n, D)).astype(dtype) for n in (Nq, Nk, Nk))
    mask = None
    if data.draw(st.booleans(), label="padding mask"):
        mask = rng.random((B, Nk)) > 0.3
        if data.draw(st.booleans(), label="a fully padded batch entry"):
            mask[-1] = False
    return q, k, v, mask, causal, scale


def heads_layout(device, t, data):
    """``t (B, H, N, D)`` on the device, either contiguous or as a (B, N, H, D) array seen transposed."""
    if data.draw(st.booleans(), label="(B, N, H, D) layout"):
        return device.put(np.ascontiguousarray(t.transpose(0, 2, 1, 3))).transpose(0, 2, 1, 3)
    return device.put(t)


@settings(max_examples=15)
@given(data=st.data())
def test_attention_forward_and_backward_match_reference(device, data):
    q, k, v, mask, causal, scale = draw_attention_case(device, data, head_dims=(1, 8, 40, 64, 72, 128))
    on = lambda t: heads_layout(device, t, data)  # noqa: E731
    mask_dev = None if mask is None else device.put(mask)
    o, lse = cuda.attention_forward(on(q), on(k), on(v), mask_dev, causal, scale)
    o_ref, lse_ref = reference.attention_forward(q, k, v, mask, causal, scale)
    o, lse = device.get(o), device.get(lse)
    assert_close(o, o_ref, np.float32, 4.0)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))  # the same rows fully masked
    assert_close(lse, lse_ref, np.float32, 10.0)

    do = np.random.default_rng(7).standard_normal(o.shape).astype(np.float32)
    grads = cuda.attention_backward(on(q), on(k), on(v), device.put(o), device.put(lse), on(do), mask_dev,
                                    causal, scale)
    want = reference.attention_backward(q, k, v, o_ref, lse_ref, do, mask, causal, scale)
    for got, ref in zip(grads, want):
        np.testing.assert_allclose(device.get(got), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("version", [1, 2])
@settings(max_examples=10)
@given(data=st.data())
def test_attention_ladder_first_rungs_match_reference(device, version, data):
    """Rungs 1 (the N x N scores in memory) and 2 (one-pass online softmax) of
    ``attention_ladder.py``; rungs 3-5 are the kernels tested above."""
    q, k, v, mask, causal, scale = draw_attention_case(device, data, head_dims=(1, 8, 40, 64, 72, 128))
    on = lambda t: heads_layout(device, t, data)  # noqa: E731
    mask_dev = None if mask is None else device.put(mask)
    o, lse = (device.get(t) for t in attention_ladder.LADDER[version].fn(on(q), on(k), on(v), mask_dev, causal,
                                                                          scale))
    o_ref, lse_ref = reference.attention_forward(q, k, v, mask, causal, scale)
    assert_close(o, o_ref, np.float32, 4.0)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    assert_close(lse, lse_ref, np.float32, 10.0)


def test_attention_ladder_tops_are_what_the_backend_runs():
    ladder = attention_ladder.LADDER
    assert ladder[3].fn is cuda.KERNELS["attention_forward"] and ladder[4].fn is cuda.KERNELS["attention_backward"]
    assert ladder[5].fn is cuda.attention_forward_mma
    assert [n for n, rung in ladder.items() if rung.op == "attention_backward"] == [4]


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_sharp_softmax(device, causal):
    """|q| about 30 per component: scores of several hundred, far past exp's
    float32 range (88), so only a kernel that keeps subtracting the running
    maximum -- and rescales what it summed whenever the maximum grows, across
    several key tiles -- stays finite and right."""
    rng = np.random.default_rng(11)
    q = (30 * rng.standard_normal((1, 2, 70, 64))).astype(np.float32)
    k, v = (rng.standard_normal((1, 2, 100, 64)).astype(np.float32) for _ in range(2))
    k[:, :, ::7] *= 3  # the maximum of a row moves to later key tiles
    o_ref, lse_ref = reference.attention_forward(*(t.astype(np.float64) for t in (q, k, v)), None, causal)
    assert np.abs(lse_ref).max() > 200  # sharp indeed
    for version in (1, 2, 3):  # the fp32 forward rungs; 3 is cuda.attention_forward
        forward = attention_ladder.LADDER[version].fn
        o, lse = (device.get(t) for t in forward(device.put(q), device.put(k), device.put(v), None, causal))
        np.testing.assert_allclose(o, o_ref, rtol=0, atol=1e-4, err_msg=f"rung {version}")
        np.testing.assert_allclose(lse, lse_ref, rtol=1e-6, atol=1e-4, err_msg=f"rung {version}")
    do = rng.standard_normal(o.shape).astype(np.float32)
    grads = cuda.attention_backward(device.put(q), device.put(k), device.put(v), device.put(o), device.put(lse),
                                    device.put(do), None, causal)
    want = reference.attention_backward(*(t.astype(np.float64) for t in (q, k, v, o_ref, lse_ref, do)), None, causal)
    for name, got, ref in zip(("dq", "dk", "dv"), grads, want):
        np.testing.assert_allclose(device.get(got), ref, rtol=0, atol=1e-4 * np.abs(ref).max(), err_msg=name)

    h = [t.astype(np.float16) for t in (q, k, v)]
    o, lse = (device.get(t) for t in cuda.attention_forward_mma(*(device.put(t) for t in h), None, causal))
    o_ref, lse_ref = reference.attention_forward(*(t.astype(np.float64) for t in h), None, causal)
    np.testing.assert_allclose(np.asarray(o, np.float32), o_ref, rtol=0, atol=4e-3)
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-6, atol=4e-3)


def test_attention_fully_padded_batch_gives_zeros_and_minus_inf(device):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 2, n, 16)).astype(np.float32) for n in (9, 40, 40))
    mask = np.ones((2, 40), dtype=bool)
    mask[1] = False
    o, lse = (device.get(t) for t in cuda.attention_forward(device.put(q), device.put(k), device.put(v),
                                                            device.put(mask)))
    assert (o[1] == 0).all() and np.isneginf(lse[1]).all() and np.isfinite(lse[0]).all()
    do = rng.standard_normal(o.shape).astype(np.float32)
    dq, dk, dv = (device.get(t) for t in cuda.attention_backward(
        device.put(q), device.put(k), device.put(v), device.put(o), device.put(lse), device.put(do),
        device.put(mask)))
    assert (dq[1] == 0).all() and (dk[1] == 0).all() and (dv[1] == 0).all()
    assert np.abs(dq[0]).max() > 0


def test_attention_rejects_bad_input(device):
    q = device.put(np.ones((1, 2, 3, 8), np.float32))
    with pytest.raises(AssertionError, match=r"\(B, H, Nk, D\)"):
        cuda.attention_forward(q, device.put(np.ones((1, 2, 3, 4), np.float32)), q)
    with pytest.raises(AssertionError, match="key_padding_mask"):
        cuda.attention_forward(q, q, q, device.put(np.ones((1, 4), bool)))
    with pytest.raises(ValueError, match="head dimension"):
        big = device.put(np.ones((1, 1, 2, 129), np.float32))
        cuda.attention_forward(big, big, big)
    with pytest.raises(TypeError, match="float32"):
        cuda.attention_forward(*(device.put(np.ones((1, 2, 3, 8))),) * 3)


# --------------------------------------------------------------------------- tensor-core attention


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(bits):
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("bfloat16", [False, True], ids=["fp16", "bf16"])
@settings(max_examples=8)
@given(data=st.data())
def test_attention_mma_forward_matches_reference(device, bfloat16, data):
    q, k, v, mask, causal, scale = draw_attention_case(device, data, head_dims=(8, 16, 40, 64, 72, 128))
    if bfloat16:
        q16, k16, v16 = (to_bf16_bits(t) for t in (q, k, v))
        q, k, v = (from_bf16_bits(t) for t in (q16, k16, v16))
        to_float, atol = from_bf16_bits, 3e-2
    else:
        q16, k16, v16 = (t.astype(np.float16) for t in (q, k, v))
        q, k, v = (t.astype(np.float32) for t in (q16, k16, v16))
        to_float, atol = (lambda t: np.asarray(t, np.float32)), 4e-3
    mask_dev = None if mask is None else device.put(mask)
    o, lse = cuda.attention_forward_mma(device.put(q16), device.put(k16), device.put(v16), mask_dev, causal,
                                        scale, bfloat16=bfloat16)
    o_ref, lse_ref = reference.attention_forward(q, k, v, mask, causal, scale)
    np.testing.assert_allclose(to_float(device.get(o)), o_ref, rtol=0, atol=atol)
    lse = device.get(lse)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    np.testing.assert_allclose(lse, lse_ref, rtol=0, atol=atol)


def test_attention_mma_rejects_bad_input(device):
    q = device.put(np.ones((1, 1, 4, 12), np.float16))
    with pytest.raises(ValueError, match="multiple of 8"):
        cuda.attention_forward_mma(q, q, q)
    with pytest.raises(TypeError, match="float16"):
        q32 = device.put(np.ones((1, 1, 4, 16), np.float32))
        cuda.attention_forward_mma(q32, q32, q32)
