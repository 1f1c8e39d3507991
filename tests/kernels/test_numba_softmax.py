"""Numba softmax / log-softmax (kernels/numba/softmax.py) against the reference math,
and the vectorisable exp (kernels/numba/vmath.py) against NumPy's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import softmax as nb
from minivl.kernels.numba.vmath import exp as vexp
from numba import njit

import minivl as mv
import minivl.functional as F
from minivl.testing import LAYOUTS
from minivl.testing import with_layout as layout

# (rtol, atol) per dtype: different summation orders and one exp per element
TOL = {np.float32: (2e-5, 1e-6), np.float64: (1e-12, 1e-14)}



@st.composite
def logits(draw):
    """Rows of logits: odd widths, magnitudes up to 1e4, -inf entries, fully masked rows."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rows = draw(st.sampled_from([1, 3, 7, 33]))
    cols = draw(st.sampled_from([1, 7, 33, 127, 257]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((rows, cols)) * draw(st.sampled_from([1.0, 30.0, 1e4]))
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.3]))] = -np.inf
    if draw(st.booleans()):
        x[rng.integers(rows)] = -np.inf  # a fully masked row
    return layout(x.astype(dtype), draw(st.sampled_from(LAYOUTS)))


def close(actual, expected, dtype):
    rtol, atol = TOL[dtype]
    assert actual.dtype == dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@settings(deadline=None, max_examples=30)
@given(logits())
def test_softmax_matches_reference(x):
    y = nb.softmax_forward(x)
    close(y, ref.softmax_forward(x), x.dtype.type)
    assert np.isfinite(y).all()
    live = np.isfinite(x).any(axis=-1)
    np.testing.assert_allclose(y.sum(axis=-1)[live], 1.0, rtol=1e-5)
    assert (y[~live] == 0).all()  # a fully masked row gives zeros, never NaN
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype)
    close(nb.softmax_backward(y, dy), ref.softmax_backward(y, dy), x.dtype.type)


@settings(deadline=None, max_examples=30)
@given(logits())
def test_log_softmax_matches_reference(x):
    y = nb.log_softmax_forward(x)
    expected = ref.log_softmax_forward(x)
    assert not np.isnan(y).any()
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected))
    finite = np.isfinite(expected)
    rtol, atol = TOL[x.dtype.type]
    np.testing.assert_allclose(y[finite], expected[finite], rtol=rtol, atol=atol * np.abs(x[finite]).max(initial=1))
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(x.dtype)
    close(nb.log_softmax_backward(y, dy), ref.log_softmax_backward(expected, dy), x.dtype.type)


def test_leading_axes_and_empty():
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    close(nb.softmax_forward(x), ref.softmax_forward(x), np.float32)
    assert nb.softmax_forward(np.zeros((4, 0), np.float32)).shape == (4, 0)


def test_bad_input_breaks_the_kernel_contract():
    """Kernels assert; F.softmax is where a user's bad input gets its TypeError."""
    with pytest.raises(AssertionError, match="softmax_forward"):
        nb.softmax_forward(np.arange(6).reshape(2, 3))
    with pytest.raises(AssertionError, match="softmax_backward"):
        nb.softmax_backward(np.zeros((2, 3)), np.zeros((3, 2)))
    mv.use("numba")
    with pytest.raises(TypeError, match=r"softmax: x .*int64 \(shape \(2, 3\)\)"):
        F.softmax(mv.tensor(np.arange(6).reshape(2, 3)))


@njit  # no cache: Numba would not notice an edit of vmath.py (only this file's timestamp)
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@pytest.mark.parametrize("dtype, max_ulp", [(np.float32, 1.0), (np.float64, 1.0)])
def test_vectorisable_exp_is_accurate_to_an_ulp(dtype, max_ulp):
    big = np.log(np.finfo(dtype).max)
    x = np.concatenate([np.linspace(-1.1 * big, 1.1 * big, 100_001), [0.0, -0.0, big, -big]]).astype(dtype)
    got = np.empty_like(x)
    _exp_all(x, got)
    truth = np.exp(x.astype(np.longdouble))
    normal = (truth > np.finfo(dtype).tiny) & (truth < np.finfo(dtype).max)
    ulps = np.abs(got[normal] - truth[normal]) / np.spacing(truth[normal].astype(dtype))
    assert ulps.max() <= max_ulp
    # below the smallest normal the result is flushed to exactly 0 (vmath's docstring: denormal
    # arithmetic is 17x slower), never a denormal
    assert np.all(got[truth < np.finfo(dtype).tiny] == 0)
    assert np.count_nonzero(truth < np.finfo(dtype).tiny) > 100
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(np.isinf(got), np.isinf(np.exp(x)))
    special = np.array([-np.inf, np.inf, -1e30, 1e30], dtype)
    out = np.empty_like(special)
    _exp_all(special, out)
    np.testing.assert_array_equal(out, [0.0, np.inf, 0.0, np.inf])
