"""GELU, exact (erf), tanh and sigmoid forms, forward and backward, as Numba kernels.

Same signatures and semantics as ``reference.gelu_forward`` /
``gelu_backward`` (Hendrycks & Gimpel, "Gaussian Error Linear Units", 2016:
GELU(x) = x * Phi(x); BERT and ViT use it exactly, GPT-2 its tanh
approximation, CLIP its sigmoid approximation Phi(x) ~ sigmoid(1.702 x), which
CLIP calls QuickGELU).

Each is one fused, parallel pass over the elements, where NumPy makes a
temporary per operation.

* erf form: written as GELU(x) = 0.5 x erfc(-x / sqrt 2), with ``vmath.erfc``
  (vectorisable in float32, a few ulp; libm's in float64). Unlike
  0.5 x (1 + erf(x / sqrt 2)) it does not cancel for negative x.
* tanh form: rewritten without tanh, since 0.5 * (1 + tanh(u)) = sigmoid(2u):
  GELU(x) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
  That needs only ``vmath.exp``, so the loop vectorises, and it is also more
  accurate for very negative x, where 1 + tanh(u) cancels.
* sigmoid form: x / (1 + exp(-1.702 x)), again only ``vmath.exp``. Its
  backward needs s (1 - s); it takes sigmoid(-z) from its own exp rather than
  as 1 - s, which keeps full relative precision when s is near 1.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._parallel import parallel_kernel
from ._rows import float_dtype
from .vmath import JIT_OPTIONS, erfc, exp

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_CUBIC = 0.044715
_SIGMOID_SCALE = 1.702


@parallel_kernel(**JIT_OPTIONS)
def _forward_erf(x, y):
    t = x.dtype.type
    for i in prange(x.shape[0]):
        y[i] = t(0.5) * x[i] * erfc(x[i] * t(-_INV_SQRT_2))  # x * Phi(x)


@parallel_kernel(**JIT_OPTIONS)
def _backward_erf(x, dy, dx):
    t = x.dtype.type
    for i in prange(x.shape[0]):
        xi = x[i]
        cdf = t(0.5) * erfc(xi * t(-_INV_SQRT_2))  # Phi(x)
        pdf = exp(t(-0.5) * xi * xi) * t(_INV_SQRT_2PI)
        dx[i] = dy[i] * (cdf + xi * pdf)


@parallel_kernel(**JIT_OPTIONS)
def _forward_tanh(x, y):
    t = x.dtype.type
    for i in prange(x.shape[0]):
        xi = x[i]
        u = t(_SQRT_2_OVER_PI) * (xi + t(_CUBIC) * xi * xi * xi)
        y[i] = xi / (t(1) + exp(t(-2) * u))  # x * sigmoid(2u); exp = inf gives -0


@parallel_kernel(**JIT_OPTIONS)
def _backward_tanh(x, dy, dx):
    t = x.dtype.type
    for i in prange(x.shape[0]):
        xi = x[i]
        u = t(_SQRT_2_OVER_PI) * (xi + t(_CUBIC) * xi * xi * xi)
        du = t(_SQRT_2_OVER_PI) * (t(1) + t(3 * _CUBIC) * xi * xi)
        s = t(1) / (t(1) + exp(t(-2) * u))  # sigmoid(2u) = 0.5 * (1 + tanh(u))
        s_minus = t(1) / (t(1) + exp(t(2) * u))  # sigmoid(-2u) = 1 - s, without cancelling
        # d/dx [x * s] = s + 2 x s (1 - s) du
        dx[i] = dy[i] * (s + t(2) * xi * (s * s_minus) * du)


@parallel_kernel(**JIT_OPTIONS)
def _forward_sigmoid(x, y):
    t = x.dtype.type
    for i in prange(x.shape[0]):
        xi = x[i]
        y[i] = xi / (t(1) + exp(t(-_SIGMOID_SCALE) * xi))  # x * sigmoid(1.702 x); exp = inf gives -0


@parallel_kernel(**JIT_OPTIONS)
def _backward_sigmoid(x, dy, dx):
    t = x.dtype.type
    for i in prange(x.shape[0]):
        z = t(_SIGMOID_SCALE) * x[i]
        s = t(1) / (t(1) + exp(-z))  # sigmoid(z)
        s_minus = t(1) / (t(1) + exp(z))  # sigmoid(-z) = 1 - s, without cancelling
        # d/dx [x * s] = s + 1.702 x s (1 - s)
        dx[i] = dy[i] * (s + z * (s * s_minus))


_FORWARD = {"none": _forward_erf, "tanh": _forward_tanh, "sigmoid": _forward_sigmoid}
_BACKWARD = {"none": _backward_erf, "tanh": _backward_tanh, "sigmoid": _backward_sigmoid}


def _check_approximate(name, approximate):
    assert approximate in _FORWARD, f"{name}: approximate must be one of {tuple(_FORWARD)}, got {approximate!r}"


def gelu_forward(x, approximate="none"):
    """GELU(x) = x * Phi(x); ``approximate`` is 'none' (erf), 'tanh' (GPT-2) or 'sigmoid' (CLIP)."""
    _check_approximate("gelu_forward", approximate)
    x = np.asarray(x)
    dtype = float_dtype("gelu_forward", x)
    flat = np.ascontiguousarray(x, dtype).ravel()  # (n,)
    y = np.empty_like(flat)
    _FORWARD[approximate](flat, y)
    return y.reshape(x.shape)


def gelu_backward(x, dy, approximate="none"):
    """dy * d GELU / dx."""
    _check_approximate("gelu_backward", approximate)
    x, dy = np.asarray(x), np.asarray(dy)
    assert x.shape == dy.shape, f"gelu_backward: shapes must match, got x.shape={x.shape}, dy.shape={dy.shape}"
    dtype = float_dtype("gelu_backward", x, dy)
    flat_x = np.ascontiguousarray(x, dtype).ravel()
    flat_dy = np.ascontiguousarray(dy, dtype).ravel()
    dx = np.empty_like(flat_x)
    _BACKWARD[approximate](flat_x, flat_dy, dx)
    return dx.reshape(x.shape)
