"""Numba fused attention (kernels/numba/attention.py) against the reference math:
outputs, log-sum-exp and gradients, with causal and padding masks and Nq <= Nk;
and every forward rung of the attention ladder (kernels/numba/attention_ladder.py)
on the same cases."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import KERNELS
from minivl.kernels.numba import attention as nb
from minivl.kernels.numba.attention_ladder import LADDER

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


def as64(*xs):
    return [np.asarray(x, np.float64) for x in xs]


def check_forward(forward, q, k, v, mask, causal, scale, dtype):
    o, lse = forward(q, k, v, mask, causal, scale)
    o_ref, lse_ref = ref.attention_forward(q, k, v, mask, causal, scale)
    o_64, lse_64 = ref.attention_forward(*as64(q, k, v), mask, causal, scale)
    close_to_truth(o, o_ref, o_64, dtype, "o")
    close_to_truth(lse, lse_ref, lse_64, dtype, "lse")
    return o_ref, lse_ref


def check(q, k, v, mask, causal, scale, dtype):
    o_ref, lse_ref = check_forward(nb.attention_forward, q, k, v, mask, causal, scale, dtype)
    do = np.random.default_rng(7).standard_normal(o_ref.shape).astype(dtype)
    # gradients at the same (o, lse) for all three, so only the backward differs
    grads = nb.attention_backward(q, k, v, o_ref, lse_ref, do, mask, causal, scale)
    grads_ref = ref.attention_backward(q, k, v, o_ref, lse_ref, do, mask, causal, scale)
    grads_64 = ref.attention_backward(*as64(q, k, v, o_ref, lse_ref, do), mask, causal, scale)
    for name, got, want, truth in zip(("dq", "dk", "dv"), grads, grads_ref, grads_64):
        close_to_truth(got, want, truth, dtype, name)


@st.composite
def attention_cases(draw):
    """(q, k, v, mask, causal, scale, dtype): odd sizes, masks, sharp softmaxes, strided heads."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    B, H = draw(st.sampled_from([(1, 1), (2, 1), (1, 3)]))
    nq = draw(st.sampled_from([1, 7, 33, 65, 130]))
    nk = nq + draw(st.sampled_from([0, 1, 31, 70]))
    d = draw(st.sampled_from([1, 8, 33, 64]))
    magnitude = draw(st.sampled_from([1.0, 30.0]))  # 30: scores ~ 1e3, a sharp softmax
    padding = draw(st.sampled_from(["none", "random", "one batch fully masked"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    q = heads_view(magnitude * rng.standard_normal((B, H, nq, d)).astype(dtype))
    k = heads_view(rng.standard_normal((B, H, nk, d)).astype(dtype))
    v = rng.standard_normal((B, H, nk, d)).astype(dtype)
    mask = None
    if padding != "none":
        mask = rng.random((B, nk)) < 0.7
        if padding == "one batch fully masked":
            mask[0] = False
    return q, k, v, mask, draw(st.booleans()), draw(st.sampled_from([None, 0.3])), dtype


@settings(deadline=None, max_examples=25)
@given(case=attention_cases())
def test_attention_matches_reference(case):
    check(*case)


FORWARD_RUNGS = sorted(n for n, rung in LADDER.items() if rung.op == "attention_forward")


@pytest.mark.parametrize("version", FORWARD_RUNGS)
@settings(deadline=None, max_examples=12)
@given(case=attention_cases())
def test_every_forward_rung_of_the_ladder_matches_reference(version, case):
    check_forward(LADDER[version].fn, *case)


def test_the_backend_runs_the_top_rungs():
    assert LADDER[3].fn is KERNELS["attention_forward"] and LADDER[4].fn is KERNELS["attention_backward"]
    assert {rung.op for rung in LADDER.values()} == {"attention_forward", "attention_backward"}


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
        for version in FORWARD_RUNGS[:-1]:
            check_forward(LADDER[version].fn, q, k, v, mask, causal, None, np.float32)


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


# Run in a process of its own: under pytest-xdist each worker is held to one
# Numba thread (tests/conftest.py), and a comparison of one thread with one
# thread cannot fail.
THREAD_COUNTS = """
import numba
import numpy as np
from minivl.kernels import reference as ref
from minivl.kernels.numba import KERNELS
from minivl.kernels.numba import attention as nb
from minivl.kernels.numba.attention_ladder import LADDER

assert numba.get_num_threads() == 2, numba.get_num_threads()
rng = np.random.default_rng(5)
q, k, v, do = (rng.standard_normal((1, 2, 200, 16)).astype(np.float32) for _ in range(4))
o, lse = ref.attention_forward(q, k, v, None, True)
runs = []
for threads in (1, 2):
    numba.set_num_threads(threads)
    runs.append(nb.attention_backward(q, k, v, o, lse, do, None, True))
for name, a, b in zip(("dq", "dk", "dv"), *runs):
    np.testing.assert_array_equal(a, b, err_msg=name)
print("bit-identical")
"""


def test_gradients_do_not_depend_on_the_thread_count():
    """Partial dQ sums are added in a fixed order: bit-identical for 1 or 2 threads."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", THREAD_COUNTS], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and "bit-identical" in result.stdout, result.stderr[-3000:]
