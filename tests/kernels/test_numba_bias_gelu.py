"""The fused ops of issue 16 on the numba backend: GELU(x + bias)
(kernels/numba/bias_gelu.py) against the float64 reference math and by finite
differences, the MLP that uses it against the unfused MLP, and the short-row
attention kernel (kernels/numba/attention_rows.py) against the reference in
the (B, H, N, D) head-split views it is fed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import attention as nb_attention
from minivl.kernels.numba import attention_rows
from minivl.kernels.numba import bias_gelu as nb

import minivl as mv
import minivl.functional as F
from minivl import backend
from minivl.testing import LAYOUTS, gradcheck
from minivl.testing import with_layout as layout

FORMS = ["none", "tanh", "sigmoid"]
TOL = {np.float32: (2e-6, 1e-6), np.float64: (1e-12, 1e-13)}


@settings(deadline=None, max_examples=30)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    approximate=st.sampled_from(FORMS),
    shape=st.sampled_from([(1, 1), (7, 33), (2, 3, 127), (200, 5)]),  # 200 rows: several dbias partials
    magnitude=st.sampled_from([1.0, 4.0, 80.0]),
    kind=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**16),
)
def test_bias_gelu_matches_the_float64_reference(dtype, approximate, shape, magnitude, kind, seed):
    rng = np.random.default_rng(seed)
    x = layout((magnitude * rng.standard_normal(shape)).astype(dtype), kind)
    bias = rng.standard_normal(shape[-1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    x64, b64, dy64 = x.astype(np.float64), bias.astype(np.float64), dy.astype(np.float64)
    rtol, atol = TOL[dtype]
    y = nb.bias_gelu_forward(x, bias, approximate)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, ref.bias_gelu_forward(x64, b64, approximate), rtol=rtol, atol=atol * magnitude)
    dx, db = nb.bias_gelu_backward(x, bias, dy, approximate)
    dx_want, db_want = ref.bias_gelu_backward(x64, b64, dy64, approximate)
    assert dx.dtype == db.dtype == dtype and db.shape == bias.shape
    np.testing.assert_allclose(dx, dx_want, rtol=rtol, atol=atol)
    rows = int(np.prod(shape[:-1]))
    np.testing.assert_allclose(db, db_want, rtol=rtol, atol=atol * rows)


@pytest.mark.parametrize("name", ["numpy", "numba"])
@pytest.mark.parametrize("approximate", FORMS)
def test_bias_gelu_gradcheck(name, approximate):
    mv.use(name)
    rng = np.random.default_rng(1)
    x = mv.tensor(rng.standard_normal((3, 70, 6)) * 2, requires_grad=True)  # 210 rows: 4 partials
    bias = mv.tensor(rng.standard_normal(6), requires_grad=True)
    assert gradcheck(lambda a, b: F.bias_gelu(a, b, approximate), x, bias)
    assert backend.report()["bias_gelu_backward"] == name


def test_bias_gelu_rejects_a_bias_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        F.bias_gelu(mv.tensor(np.zeros((2, 4))), mv.tensor(np.zeros(3)))


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "quick_gelu"])
def test_fused_mlp_equals_the_unfused_mlp(activation):
    """The MLP on numba takes F.bias_gelu; fc2(act(fc1(x))) on numpy, same weights, agrees."""
    from minivl.nn.transformer import MLP

    x0 = np.random.default_rng(2).standard_normal((2, 5, 8)).astype(np.float32)
    out = {}
    for name in ("numpy", "numba"):
        mv.use(name)
        mv.manual_seed(0)
        mlp = MLP(8, 32, activation=activation)
        x = mv.tensor(x0, requires_grad=True)
        y = mlp(x) if name == "numba" else mlp.fc2(mlp.act(mlp.fc1(x)))
        (y * y).sum().backward()
        out[name] = (y.data, x.grad, mlp.fc1.bias.grad, mlp.fc1.weight.grad)
        assert ("bias_gelu_forward" in backend.report()) == (name == "numba")
    for got, want in zip(out["numba"], out["numpy"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(deadline=None, max_examples=25)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    sizes=st.sampled_from([(2, 3, 5, 7, 4), (3, 2, 6, 6, 8), (1, 1, 1, 1, 1), (2, 2, 9, 4, 3), (1, 4, 17, 48, 16)]),
    causal=st.booleans(),
    padded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_short_row_attention_matches_the_reference_on_head_split_views(dtype, sizes, causal, padded, seed):
    """q, k, v as the (B, H, N, D) views MultiHeadAttention passes (one (B, N, 3, H, D)
    projection, split): the kernel reads them in place and returns views of its own."""
    B, H, Nq, Nk, D = sizes
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, Nq, H, D)).astype(dtype).transpose(0, 2, 1, 3)
    kv = rng.standard_normal((B, Nk, 2, H, D)).astype(dtype)
    k, v = kv[:, :, 0].transpose(0, 2, 1, 3), kv[:, :, 1].transpose(0, 2, 1, 3)
    mask = None
    if padded:
        mask = rng.random((B, Nk)) < 0.7
        mask[0] = False  # a fully masked batch row: zero output, lse -inf, zero gradients
    with attention_rows.forced_kernel("rows"):  # these sizes exercise this kernel, not the tiled one
        o, lse = nb_attention.attention_forward(q, k, v, mask, causal)
    o_want, lse_want = ref.attention_forward(q, k, v, mask, causal)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(o, o_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(lse, lse_want, rtol=tol, atol=tol)
    do = rng.standard_normal(o.shape).astype(dtype)
    with attention_rows.forced_kernel("rows"):
        grads = nb_attention.attention_backward(q, k, v, o, lse, do, mask, causal)
    for got, want in zip(grads, ref.attention_backward(q, k, v, o_want, lse_want, do, mask, causal)):
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=10 * tol, atol=10 * tol)
