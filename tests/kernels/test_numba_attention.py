"""Numba fused attention (kernels/numba/attention.py) against the reference math:
outputs, log-sum-exp and gradients, with causal and padding masks and Nq <= Nk."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import attention as nb

import minivl as mv
import minivl.functional as F

# (rtol, atol) per dtype for unit-scale o, lse and gradients
TOL = {np.float32: (1e-4, 2e-5), np.float64: (1e-10, 1e-12)}


def heads_view(x):
    """x (B, H, N, D) as a non-contiguous view, the way a model makes it:
    a (B, N, H, D) projection with the head axis swapped forward."""
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def close_to_truth(got, want, truth, dtype, name):
    """|got - truth| within tolerance, plus 4x the reference's own rounding error.

    ``truth`` is the reference evaluated in float64. A sharp softmax rounds
    P = exp(S - lse) at |lse| * eps, so in float32 even the reference is off by
    more than a fixed tolerance; the fused kernel must be no worse than it.
    """
    rtol, atol = TOL[dtype]
    assert got.dtype == dtype and got.shape == truth.shape, name
    finite = np.isfinite(truth)
    np.testing.assert_array_equal(got[~finite], truth[~finite], err_msg=name)  # -inf lse rows
    g, w, t = (np.asarray(a, np.float64)[finite] for a in (got, want, truth))
    slack = 4 * np.abs(w - t).max(initial=0) + atol * (1 + np.abs(t).max(initial=0))
    np.testing.assert_allclose(g, t, rtol=rtol, atol=slack, err_msg=name)


def check(q, k, v, mask, causal, scale, dtype):
    as64 = lambda *xs: [np.asarray(x, np.float64) for x in xs]
    o, lse = nb.attention_forward(q, k, v, mask, causal, scale)
    o_ref, lse_ref = ref.attention_forward(q, k, v, mask, causal, scale)
    o_64, lse_64 = ref.attention_forward(*as64(q, k, v), mask, causal, scale)
    close_to_truth(o, o_ref, o_64, dtype, "o")
    close_to_truth(lse, lse_ref, lse_64, dtype, "lse")
    do = np.random.default_rng(7).standard_normal(o_ref.shape).astype(dtype)
    # gradients at the same (o, lse) for all three, so only the backward differs
    grads = nb.attention_backward(q, k, v, o_ref, lse_ref, do, mask, causal, scale)
    grads_ref = ref.attention_backward(q, k, v, o_ref, lse_ref, do, mask, causal, scale)
    grads_64 = ref.attention_backward(*as64(q, k, v, o_ref, lse_ref, do), mask, causal, scale)
    for name, got, want, truth in zip(("dq", "dk", "dv"), grads, grads_ref, grads_64):
        close_to_truth(got, want, truth, dtype, name)


@settings(deadline=None, max_examples=25)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    bh=st.sampled_from([(1, 1), (2, 1), (1, 3)]),
    nq=st.sampled_from([1, 7, 33, 65, 130]),
    extra_keys=st.sampled_from([0, 1, 31, 70]),  # Nk = Nq + extra_keys
    d=st.sampled_from([1, 8, 33, 64]),
    causal=st.booleans(),
    padding=st.sampled_from(["none", "random", "one batch fully masked"]),
    scale=st.sampled_from([None, 0.3]),
    magnitude=st.sampled_from([1.0, 30.0]),  # 30: scores ~ 1e3, a sharp softmax
    seed=st.integers(0, 2**16),
)
def test_attention_matches_reference(dtype, bh, nq, extra_keys, d, causal, padding, scale, magnitude, seed):
    rng = np.random.default_rng(seed)
    (B, H), nk = bh, nq + extra_keys
    q = heads_view(magnitude * rng.standard_normal((B, H, nq, d)).astype(dtype))
    k = heads_view(rng.standard_normal((B, H, nk, d)).astype(dtype))
    v = rng.standard_normal((B, H, nk, d)).astype(dtype)
    mask = None
    if padding != "none":
        mask = rng.random((B, nk)) < 0.7
        if padding == "one batch fully masked":
            mask[0] = False
    check(q, k, v, mask, causal, scale, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_more_queries_than_keys_and_other_value_width(dtype):
    """Causal with Nq > Nk leaves the first queries with no key at all; Dv != D."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 2, 70, 16)).astype(dtype)
    k = rng.standard_normal((2, 2, 40, 16)).astype(dtype)
    v = rng.standard_normal((2, 2, 40, 24)).astype(dtype)
    check(q, k, v, None, True, None, dtype)
    o, lse = nb.attention_forward(q, k, v, None, True)
    assert (o[:, :, :30] == 0).all() and np.isneginf(lse[:, :, :30]).all()


def test_long_sequence_crosses_many_tiles():
    rng = np.random.default_rng(4)
    n = 4 * nb.BLOCK_Q + 3
    q, k, v = (rng.standard_normal((1, 2, n, 32)).astype(np.float32) for _ in range(3))
    mask = rng.random((1, n)) < 0.9
    for causal in (False, True):
        check(q, k, v, mask, causal, None, np.float32)


def test_bad_shapes_break_the_kernel_contract():
    """Kernels assert; F.scaled_dot_product_attention is where users get ValueErrors."""
    q = np.zeros((1, 2, 4, 8), np.float32)
    with pytest.raises(AssertionError, match="q.shape"):
        nb.attention_forward(q, np.zeros((1, 2, 4, 7), np.float32), q)
    with pytest.raises(AssertionError, match="key_padding_mask"):
        nb.attention_forward(q, q, q, np.ones((1, 5), bool))
    with pytest.raises(AssertionError, match="lse"):
        nb.attention_backward(q, q, q, q, np.zeros((1, 2, 5)), q)
    mv.use("numba")
    t = mv.tensor(q)
    with pytest.raises(ValueError, match=r"incompatible q \(1, 2, 4, 8\), k \(1, 2, 4, 7\)"):
        F.scaled_dot_product_attention(t, mv.tensor(np.zeros((1, 2, 4, 7), np.float32)), t)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, Nk\) = \(1, 4\)"):
        F.scaled_dot_product_attention(t, t, t, key_padding_mask=np.ones((1, 5), bool))


def test_gradients_do_not_depend_on_the_thread_count():
    """Partial dQ sums are added in a fixed order: bit-identical for 1 or all threads."""
    rng = np.random.default_rng(5)
    q, k, v, do = (rng.standard_normal((1, 2, 200, 16)).astype(np.float32) for _ in range(4))
    o, lse = ref.attention_forward(q, k, v, None, True)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = nb.attention_backward(q, k, v, o, lse, do, None, True)
    finally:
        numba.set_num_threads(before)
    parallel = nb.attention_backward(q, k, v, o, lse, do, None, True)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
