"""Numba GELU (kernels/numba/gelu.py) against the reference math (SciPy's erf),
in its three forms: exact (erf), tanh (GPT-2) and sigmoid (CLIP's QuickGELU)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import gelu as nb
from minivl.kernels.numba.vmath import erfc
from numba import njit
from scipy.special import erfc as scipy_erfc

import minivl as mv
import minivl.functional as F
from minivl.testing import LAYOUTS
from minivl.testing import with_layout as layout

# (rtol, atol) per dtype: erfc is good to a few ulp (vmath.py). In float64 the
# truth is the reference itself, whose tanh-form slope 0.5 (1 + t + ...) cancels
# for x near -6 (t near -1) to an absolute error of about |x du| ulp(1) ~ 2e-15.
TOL = {np.float32: (2e-6, 1e-7), np.float64: (1e-13, 1e-14)}
FORMS = ["none", "tanh", "sigmoid"]


def close_to_truth(got, want, truth, dtype):
    """|got - truth| within tolerance, plus 4x the reference's own rounding error
    (0.5 x (1 + tanh u) cancels for negative x; the kernels avoid that form)."""
    rtol, atol = TOL[dtype]
    assert got.dtype == dtype and got.shape == truth.shape
    slack = 4 * np.abs(want.astype(np.float64) - truth).max(initial=0)
    np.testing.assert_allclose(got, truth, rtol=rtol, atol=atol + slack)


@settings(deadline=None, max_examples=40)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    approximate=st.sampled_from(FORMS),
    shape=st.sampled_from([(1, 1), (7, 33), (2, 3, 127), (257, 5)]),
    magnitude=st.sampled_from([1.0, 4.0, 80.0, 1e4]),
    kind=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**16),
)
def test_gelu_matches_reference(dtype, approximate, shape, magnitude, kind, seed):
    rng = np.random.default_rng(seed)
    x = layout((magnitude * rng.standard_normal(shape)).astype(dtype), kind)
    dy = rng.standard_normal(shape).astype(dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y = nb.gelu_forward(x, approximate)
    close_to_truth(y, ref.gelu_forward(x, approximate), ref.gelu_forward(x64, approximate), dtype)
    dx = nb.gelu_backward(x, dy, approximate)
    assert np.isfinite(dx).all()
    close_to_truth(dx, ref.gelu_backward(x, dy, approximate), ref.gelu_backward(x64, dy64, approximate), dtype)


@njit(error_model="numpy")  # no cache: an edit of vmath.py must recompile it
def _erfc_all(x, out):
    for i in range(x.shape[0]):
        out[i] = erfc(x[i])


@pytest.mark.parametrize("dtype, max_rel", [(np.float32, 5e-7), (np.float64, 1e-14)])
def test_erfc_matches_scipy(dtype, max_rel):
    """vmath.erfc (float32: our vectorisable fit; float64: libm) against SciPy."""
    x = np.concatenate([np.linspace(-9, 9, 40_001), np.geomspace(1e-30, 1e-2, 200)]).astype(dtype)
    got = np.empty_like(x)
    _erfc_all(x, got)
    truth = scipy_erfc(x.astype(np.float64))
    tiny = truth > np.finfo(dtype).tiny  # below it float32 is denormal: ulp-scale error
    assert (np.abs(got - truth) / truth)[tiny].max() <= max_rel
    special = np.array([np.inf, -np.inf, 0.0, 30.0], dtype)
    _erfc_all(special, got[:4])
    np.testing.assert_array_equal(got[:4], [0.0, 2.0, 1.0, 0.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_form_is_accurate_to_a_few_ulp(dtype):
    """GELU(x) = x Phi(x) against SciPy for x > 0, where 1 + erf cannot cancel."""
    x = np.geomspace(1e-6, 10, 20_001).astype(dtype)
    y = nb.gelu_forward(x)
    truth = ref.gelu_forward(x.astype(np.float64))
    assert (np.abs(y - truth) / np.spacing(np.abs(truth).astype(dtype))).max() <= 6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_form_is_accurate_to_a_few_ulp(dtype):
    """x sigmoid(1.702 x) and its slope for x > 0, against the float64 reference.

    The slope s + 1.702 x s (1 - s) is the test's point: with 1 - s computed by
    subtraction it is off by 8 ulp (float32) to 19 ulp (float64) where s is near 1.
    """
    x = np.geomspace(1e-6, 40, 20_001).astype(dtype)
    for got, truth in [
        (nb.gelu_forward(x, "sigmoid"), ref.gelu_forward(x.astype(np.float64), "sigmoid")),
        (nb.gelu_backward(x, np.ones_like(x), "sigmoid"),
         ref.gelu_backward(x.astype(np.float64), np.ones(x.shape), "sigmoid")),
    ]:
        assert (np.abs(got - truth) / np.spacing(np.abs(truth).astype(dtype))).max() <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", FORMS)
def test_extreme_inputs_saturate_without_warnings(dtype, approximate):
    """GELU(x) -> x and its slope -> 1 as x -> inf, both -> 0 as x -> -inf, in every
    form and on both paths, with no overflow warning (the sigmoids never see exp(+big))."""
    x = np.array([-1e4, -80.0, 80.0, 1e4], dtype)
    want_y = np.array([0.0, 0.0, 80.0, 1e4])
    want_dx = np.array([0.0, 0.0, 1.0, 1.0])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for kernels in (ref, nb):
            y = kernels.gelu_forward(x, approximate)
            dx = kernels.gelu_backward(x, np.ones_like(x), approximate)
            assert y.dtype == dx.dtype == dtype
            np.testing.assert_allclose(y, want_y, rtol=1e-7, atol=1e-30)
            np.testing.assert_allclose(dx, want_dx, rtol=1e-7, atol=1e-30)


@pytest.mark.parametrize("kernels", [ref, nb], ids=["reference", "numba"])
def test_bad_arguments_break_the_kernel_contract(kernels):
    """Kernels assert; F.gelu is where a user's bad ``approximate`` gets its ValueError."""
    for bad in ("sigmoid_", "erf", None):
        with pytest.raises(AssertionError, match="approximate must be one of"):
            kernels.gelu_forward(np.zeros(3), bad)
        with pytest.raises(AssertionError, match="approximate must be one of"):
            kernels.gelu_backward(np.zeros(3), np.zeros(3), bad)
        with pytest.raises(ValueError, match="approximate must be one of"):
            F.gelu(mv.tensor(np.zeros(3)), bad)
    if kernels is nb:
        with pytest.raises(AssertionError, match="shapes"):
            nb.gelu_backward(np.zeros(3), np.zeros(4))
