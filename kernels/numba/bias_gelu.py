"""GELU(x + bias) as one Numba pass, forward and backward (``reference.bias_gelu_forward``).

A transformer MLP computes ``GELU(x W^T + b)``. Done as two ops, the bias is
one pass over the (rows, hidden) activations and GELU another, and in the
backward the bias gradient (a column sum of dz) is a third. Here the GEMM
adds no bias, and

* the forward reads each z = x + b once and writes GELU(z);
* the backward writes dx = dy * GELU'(z) and, in the same sweep, adds each
  row of it into a per-task partial of dbias; the partials are summed in a
  fixed order afterwards, so the result does not depend on the thread count
  or the schedule.

The per-element math is that of ``gelu.py`` (erf form via ``vmath.erfc``;
tanh form as x * sigmoid(2u); sigmoid form with sigmoid(-z) from its own exp),
written once as inlined scalar functions; the branch on the form sits outside
the inner loop, so each inner loop is straight arithmetic LLVM vectorises.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._parallel import parallel_kernel
from ._rows import as_rows, float_dtype
from .vmath import FASTMATH, JIT_OPTIONS, erfc, exp

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_CUBIC = 0.044715
_SIGMOID_SCALE = 1.702
FORMS = {"none": 0, "tanh": 1, "sigmoid": 2}
_SCALAR = {"inline": "always", "fastmath": FASTMATH, "error_model": "numpy", "cache": True}

# Rows per task of the backward: each task keeps its own dbias partial.
ROWS_PER_TASK = 64


@njit(**_SCALAR)
def _value(z, form):
    """GELU(z) in the form ``form`` (0 erf, 1 tanh, 2 sigmoid)."""
    t = type(z)
    if form == 0:
        return t(0.5) * z * erfc(z * t(-_INV_SQRT_2))
    if form == 1:
        u = t(_SQRT_2_OVER_PI) * (z + t(_CUBIC) * z * z * z)
        return z / (t(1) + exp(t(-2) * u))
    return z / (t(1) + exp(t(-_SIGMOID_SCALE) * z))


@njit(**_SCALAR)
def _slope(z, form):
    """d GELU / dz in the form ``form``."""
    t = type(z)
    if form == 0:
        return t(0.5) * erfc(z * t(-_INV_SQRT_2)) + z * exp(t(-0.5) * z * z) * t(_INV_SQRT_2PI)
    if form == 1:
        u = t(_SQRT_2_OVER_PI) * (z + t(_CUBIC) * z * z * z)
        du = t(_SQRT_2_OVER_PI) * (t(1) + t(3 * _CUBIC) * z * z)
        s = t(1) / (t(1) + exp(t(-2) * u))
        s_minus = t(1) / (t(1) + exp(t(2) * u))
        return s + t(2) * z * (s * s_minus) * du
    w = t(_SIGMOID_SCALE) * z
    s = t(1) / (t(1) + exp(-w))
    s_minus = t(1) / (t(1) + exp(w))
    return s + w * (s * s_minus)


@parallel_kernel(**JIT_OPTIONS)
def _forward(x, b, form, y):
    """y (R, C) = GELU(x (R, C) + b (C,))."""
    R, C = x.shape
    for i in prange(R):
        if form == 0:
            for j in range(C):
                y[i, j] = _value(x[i, j] + b[j], 0)
        elif form == 1:
            for j in range(C):
                y[i, j] = _value(x[i, j] + b[j], 1)
        else:
            for j in range(C):
                y[i, j] = _value(x[i, j] + b[j], 2)


@parallel_kernel(**JIT_OPTIONS)
def _backward(x, b, dy, form, dx, partial):
    """dx (R, C) = dy * GELU'(x + b); partial[t] = the sum of dx over task t's rows."""
    R, C = x.shape
    n_tasks = partial.shape[0]
    for task in prange(n_tasks):
        acc = partial[task]
        acc[:] = 0
        for i in range(task * ROWS_PER_TASK, min(R, (task + 1) * ROWS_PER_TASK)):
            if form == 0:
                for j in range(C):
                    d = dy[i, j] * _slope(x[i, j] + b[j], 0)
                    dx[i, j] = d
                    acc[j] += d
            elif form == 1:
                for j in range(C):
                    d = dy[i, j] * _slope(x[i, j] + b[j], 1)
                    dx[i, j] = d
                    acc[j] += d
            else:
                for j in range(C):
                    d = dy[i, j] * _slope(x[i, j] + b[j], 2)
                    dx[i, j] = d
                    acc[j] += d


def _form(name, approximate):
    assert approximate in FORMS, f"{name}: approximate must be one of {tuple(FORMS)}, got {approximate!r}"
    return FORMS[approximate]


def bias_gelu_forward(x, bias, approximate="none"):
    """GELU(x + bias) over the last axis; any leading axes, any layout."""
    form = _form("bias_gelu_forward", approximate)
    x, bias = np.asarray(x), np.asarray(bias)
    assert x.ndim >= 1 and bias.shape == x.shape[-1:], (
        f"bias_gelu_forward: bias must have shape {x.shape[-1:]}, got x.shape={x.shape}, bias.shape={bias.shape}")
    dtype = float_dtype("bias_gelu_forward", x, bias)
    x2 = as_rows(x, dtype)  # (R, C)
    y = np.empty_like(x2)
    if y.size:
        _forward(x2, np.ascontiguousarray(bias, dtype), form, y)
    return y.reshape(x.shape)


def bias_gelu_backward(x, bias, dy, approximate="none"):
    """``(dx, dbias)``: dy * GELU'(x + bias), and its sum over every axis but the last."""
    form = _form("bias_gelu_backward", approximate)
    x, bias, dy = np.asarray(x), np.asarray(bias), np.asarray(dy)
    assert x.shape == dy.shape and bias.shape == x.shape[-1:], (
        f"bias_gelu_backward: expected x and dy of one shape and bias of shape x.shape[-1:], got "
        f"x.shape={x.shape}, dy.shape={dy.shape}, bias.shape={bias.shape}")
    dtype = float_dtype("bias_gelu_backward", x, bias, dy)
    x2, dy2 = as_rows(x, dtype), as_rows(dy, dtype)
    dx = np.empty_like(x2)
    n_tasks = -(-x2.shape[0] // ROWS_PER_TASK)
    partial = np.empty((n_tasks, x2.shape[1]), dtype)  # (tasks, C)
    if dx.size:
        _backward(x2, np.ascontiguousarray(bias, dtype), dy2, form, dx, partial)
    return dx.reshape(x.shape), partial.sum(axis=0)
