"""Numba layer norm (kernels/numba/layer_norm.py) against the reference math."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import layer_norm as nb

import minivl as mv
import minivl.functional as F
from minivl.testing import LAYOUTS
from minivl.testing import with_layout as layout

# (rtol, atol) per dtype, for unit-scale outputs and gradients
TOL = {np.float32: (1e-4, 2e-5), np.float64: (1e-10, 1e-12)}



def close(actual, expected, dtype, scale=1.0):
    rtol, atol = TOL[dtype]
    assert actual.dtype == dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


@settings(deadline=None, max_examples=30)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.sampled_from([(1, 1), (1, 7), (7, 33), (2, 5, 127), (65, 257)]),
    offset=st.sampled_from([0.0, 1e4]),  # a large mean: two-pass variance needed
    spread=st.sampled_from([1e-2, 1.0, 1e4]),
    kind=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_matches_reference(dtype, shape, offset, spread, kind, seed):
    rng = np.random.default_rng(seed)
    x = layout((offset + spread * rng.standard_normal(shape)).astype(dtype), kind)
    gamma = rng.standard_normal(shape[-1]).astype(dtype)
    beta = rng.standard_normal(shape[-1]).astype(dtype)
    y, mean, rstd = nb.layer_norm_forward(x, gamma, beta, 1e-5)
    y_ref, mean_ref, rstd_ref = ref.layer_norm_forward(x, gamma, beta, 1e-5)
    # x - mean is rounded relative to |mean|, and rstd multiplies that error
    r = float(rstd_ref.max())
    rel = 1.0 + offset * r
    close(y, y_ref, dtype, rel)
    close(mean, mean_ref, dtype, offset + spread)
    close(rstd, rstd_ref, dtype, r * rel)
    dy = rng.standard_normal(shape).astype(dtype)
    grads = nb.layer_norm_backward(dy, x, gamma, mean_ref, rstd_ref)
    grads_ref = ref.layer_norm_backward(dy, x, gamma, mean_ref, rstd_ref)
    rows = int(np.prod(shape[:-1]))
    for got, want, scale in zip(grads, grads_ref, (r * rel, rel * rows, rows)):
        close(got, want, dtype, scale)


def test_bad_shapes_break_the_kernel_contract():
    """Kernels assert; F.layer_norm is where a user's bad input gets its error."""
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(AssertionError, match="gamma"):
        nb.layer_norm_forward(x, np.ones(5, np.float32), np.zeros(4, np.float32))
    with pytest.raises(AssertionError, match="layer_norm_backward"):
        nb.layer_norm_backward(x, x, np.ones(4, np.float32), np.zeros(2), np.zeros(3))
    with pytest.raises(AssertionError, match="float32 or float64"):
        nb.layer_norm_forward(np.zeros((3, 4), int), np.ones(4), np.zeros(4))
    mv.use("numba")
    with pytest.raises(ValueError, match=r"shape \(4,\).*\(3, 4\).*\(5,\)"):
        F.layer_norm(mv.tensor(x), mv.tensor(np.ones(5, np.float32)), mv.tensor(np.zeros(4, np.float32)))
    with pytest.raises(TypeError, match="layer_norm: x"):
        F.layer_norm(mv.tensor(np.zeros((3, 4), int)), mv.tensor(np.ones(4)), mv.tensor(np.zeros(4)))
