"""Every elementwise op and reduction, checked twice (MiniTorch's habit):
forward values against plain NumPy math, and gradients against central
differences in float64 -- on hypothesis-drawn shapes with size-1 axes and
broadcasting."""

from __future__ import annotations

import math
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import erf

import minivl as mv
from minivl import functional as F
from minivl.testing import gradcheck

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def arrays(shape, low=-2.0, high=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, width=64))


def leaf(a):
    return mv.tensor(np.array(a, dtype=np.float64), requires_grad=True)


UNARY = {
    # name: (minivl fn, numpy reference, input range)
    "neg": (F.neg, lambda x: -x, (-2, 2)),
    "exp": (F.exp, np.exp, (-2, 2)),
    "log": (F.log, np.log, (0.2, 3)),
    "sqrt": (F.sqrt, np.sqrt, (0.2, 3)),
    "tanh": (F.tanh, np.tanh, (-2, 2)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-3, 3)),
    "relu": (F.relu, lambda x: np.maximum(x, 0), (-2, 2)),
    "gelu": (F.gelu, lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))), (-3, 3)),
    "gelu_tanh": (lambda x: F.gelu(x, "tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), (-3, 3)),
    "quick_gelu": (F.quick_gelu, lambda x: x / (1 + np.exp(-1.702 * x)), (-3, 3)),
    "pow3": (lambda x: x**3, lambda x: x**3, (-2, 2)),
    "pow_half": (lambda x: x**0.5, np.sqrt, (0.2, 3)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary(name, data):
    fn, ref, (lo, hi) = UNARY[name]
    x = data.draw(arrays(data.draw(shapes), lo, hi))
    if name == "relu":  # keep away from the kink, where the derivative does not exist
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    np.testing.assert_allclose(fn(leaf(x)).data, ref(x), rtol=1e-10, atol=1e-12)
    gradcheck(fn, leaf(x))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@given(data=st.data())
def test_quick_gelu_is_the_sigmoid_form_of_gelu(backend, data):
    """CLIP's x sigmoid(1.702 x) through the GELU kernels of each CPU backend."""
    mv.use(backend)
    x = data.draw(arrays(data.draw(shapes), -8, 8))
    y = F.quick_gelu(leaf(x))
    np.testing.assert_allclose(y.data, x / (1 + np.exp(-1.702 * x)), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(y.data, F.gelu(leaf(x), "sigmoid").data)
    gradcheck(F.quick_gelu, leaf(x))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_quick_gelu_saturates_in_float32_without_warnings(backend):
    mv.use(backend)
    x = mv.tensor(np.array([-1e4, -80.0, 0.0, 80.0, 1e4], dtype=np.float32), requires_grad=True)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = F.quick_gelu(x)
        y.backward(np.ones(5, dtype=np.float32))
    assert y.dtype == x.grad.dtype == np.float32
    np.testing.assert_allclose(y.data, [0.0, 0.0, 0.0, 80.0, 1e4], rtol=1e-7, atol=1e-30)
    np.testing.assert_allclose(x.grad, [0.0, 0.0, 0.5, 1.0, 1.0], rtol=1e-7, atol=1e-30)


def test_gelu_rejects_unknown_forms():
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh', 'sigmoid'\)"):
        F.gelu(leaf([1.0]), "quick")


BINARY = {
    "add": (F.add, np.add),
    "sub": (F.sub, np.subtract),
    "mul": (F.mul, np.multiply),
    "div": (F.div, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_broadcasting(name, data):
    fn, ref = BINARY[name]
    sa, sb = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)).input_shapes
    a = data.draw(arrays(sa))
    b = data.draw(arrays(sb, 0.5, 2.0) if name == "div" else arrays(sb))
    out = fn(leaf(a), leaf(b))
    assert out.shape == np.broadcast_shapes(sa, sb)
    np.testing.assert_allclose(out.data, ref(a, b), rtol=1e-12)
    gradcheck(fn, leaf(a), leaf(b))


def test_python_scalars_take_the_tensor_dtype():
    x = mv.tensor(np.ones(3, dtype=np.float32))
    for y in (x + 1, 2 * x, x / 3.0, 1 - x, x**2):
        assert y.dtype == np.float32
    assert (mv.tensor(np.ones(3)) + 1).dtype == np.float64


def test_tensor_exponent():
    gradcheck(lambda a, p: F.pow(a, p), leaf([0.5, 1.5, 2.0]), leaf([1.0, 2.5, -0.5]))


REDUCTIONS = {
    "sum": (F.sum, np.sum),
    "mean": (F.mean, np.mean),
    "max": (F.max, np.max),
    "var": (F.var, np.var),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(data=st.data(), keepdims=st.booleans())
def test_reductions(name, data, keepdims):
    fn, ref = REDUCTIONS[name]
    shape = data.draw(shapes)
    x = data.draw(arrays(shape))
    if name == "max":  # distinct values, so the max is differentiable
        x = x + np.arange(x.size).reshape(shape) * 1e-2
    axis = data.draw(st.none() | st.integers(0, len(shape) - 1) | st.just(tuple(range(len(shape)))))
    out = fn(leaf(x), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, ref(x, axis=axis, keepdims=keepdims), rtol=1e-10, atol=1e-12)
    gradcheck(lambda t: fn(t, axis=axis, keepdims=keepdims), leaf(x))


def test_max_ties_share_the_gradient():
    x = leaf([1.0, 3.0, 3.0])
    F.max(x).backward()
    np.testing.assert_allclose(x.grad, [0.0, 0.5, 0.5])


def test_where_and_masked_fill():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    cond = rng.random((3, 4)) > 0.5
    np.testing.assert_allclose(F.where(cond, leaf(a), leaf(b)).data, np.where(cond, a, b))
    gradcheck(lambda x, y: F.where(cond, x, y), leaf(a), leaf(b))
    out = F.masked_fill(leaf(a), cond, -5.0)
    np.testing.assert_allclose(out.data, np.where(cond, -5.0, a))
    with pytest.raises(TypeError, match="boolean"):
        F.where(cond.astype(int), leaf(a), leaf(b))


def test_sigmoid_is_stable_for_huge_inputs():
    y = F.sigmoid(mv.tensor(np.array([-1e4, 0.0, 1e4], dtype=np.float32)))
    np.testing.assert_array_equal(y.data, np.array([0.0, 0.5, 1.0], dtype=np.float32))
