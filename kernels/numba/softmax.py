"""Softmax and log-softmax over the last axis, forward and backward, as Numba kernels.

Same signatures and semantics as ``reference.softmax_forward`` and friends;
the slide is "softmax" (attention weights, the LM output layer), the trick
the max subtraction of every stable implementation (e.g. Milakov & Gimelshein,
"Online normalizer calculation for softmax", 2018).

One parallel task per row. NumPy's composed softmax makes four full passes
over memory (max, x - max, exp, divide) with a temporary array each; here a
row is read from memory once and written once: the max pass pulls the row
into L1/L2, and the exp+sum pass and the scaling pass work on cached data.
(The online max/sum of Milakov & Gimelshein fuses max and sum into one pass;
it pays when a row does not fit in cache, which at the widths of this
library's models -- up to a few thousand columns -- it always does. The
attention kernel, whose rows are never materialised, does use it.)

The exp is ``vmath.exp`` and the max ``vmath.row_max``, both written so that
LLVM vectorises them; ``np.exp`` inside a Numba loop would be a libm call per
element, and a plain float max loop is a scalar dependency chain.

Conventions (reference.py): a row of all -inf gives zeros in softmax and
-inf in log-softmax (its log-sum-exp is -inf), never NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._parallel import SERIAL_BELOW_LIGHT, parallel_kernel
from ._rows import as_rows, check_same_shape, float_dtype
from .vmath import JIT_OPTIONS, exp, row_max


@njit(**JIT_OPTIONS)
def _shift(row):
    """The row maximum, or 0 when it is not finite (an all -inf row: exp gives 0)."""
    m = row_max(row)
    return m if math.isfinite(m) else row.dtype.type(0)


@parallel_kernel(**JIT_OPTIONS)
def _softmax_forward_rows(x, y):
    for r in prange(x.shape[0]):
        xr, yr = x[r], y[r]  # (C,)
        m = _shift(xr)
        s = xr.dtype.type(0)
        for j in range(xr.shape[0]):
            e = exp(xr[j] - m)
            yr[j] = e
            s += e
        inv = xr.dtype.type(1) / s if s != 0 else s  # all -inf row: s = 0 and every e = 0
        for j in range(xr.shape[0]):
            yr[j] *= inv


@parallel_kernel(serial_below=SERIAL_BELOW_LIGHT, **JIT_OPTIONS)
def _softmax_backward_rows(y, dy, dx):
    for r in prange(y.shape[0]):
        yr, dyr, dxr = y[r], dy[r], dx[r]
        dot = yr.dtype.type(0)
        for j in range(yr.shape[0]):
            dot += dyr[j] * yr[j]
        for j in range(yr.shape[0]):
            dxr[j] = yr[j] * (dyr[j] - dot)


@parallel_kernel(**JIT_OPTIONS)
def _log_softmax_forward_rows(x, y):
    for r in prange(x.shape[0]):
        xr, yr = x[r], y[r]
        m = _shift(xr)
        s = xr.dtype.type(0)
        for j in range(xr.shape[0]):
            s += exp(xr[j] - m)
        # an all -inf row has s = 0: subtracting 0 keeps it all -inf (no -inf - -inf)
        lse = m + math.log(s) if s != 0 else s
        for j in range(xr.shape[0]):
            yr[j] = xr[j] - lse


@parallel_kernel(serial_below=SERIAL_BELOW_LIGHT, **JIT_OPTIONS)
def _log_softmax_backward_rows(y, dy, dx):
    for r in prange(y.shape[0]):
        yr, dyr, dxr = y[r], dy[r], dx[r]
        total = yr.dtype.type(0)
        for j in range(yr.shape[0]):
            total += dyr[j]
        for j in range(yr.shape[0]):
            dxr[j] = dyr[j] - exp(yr[j]) * total


def _forward(name, kernel, x):
    x = np.asarray(x)
    check_same_shape(name, x=x)
    dtype = float_dtype(name, x)
    rows = as_rows(x, dtype)  # (R, C)
    out = np.empty_like(rows)
    if rows.size:
        kernel(rows, out)
    return out.reshape(x.shape)


def _backward(name, kernel, y, dy):
    y, dy = np.asarray(y), np.asarray(dy)
    check_same_shape(name, y=y, dy=dy)
    dtype = float_dtype(name, y, dy)
    y_rows, dy_rows = as_rows(y, dtype), as_rows(dy, dtype)
    dx = np.empty_like(y_rows)
    if dx.size:
        kernel(y_rows, dy_rows, dx)
    return dx.reshape(y.shape)


def softmax_forward(x):
    """softmax(x) over the last axis."""
    return _forward("softmax_forward", _softmax_forward_rows, x)


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)), given the forward output y."""
    return _backward("softmax_backward", _softmax_backward_rows, y, dy)


def log_softmax_forward(x):
    """log_softmax(x) = x - logsumexp(x) over the last axis."""
    return _forward("log_softmax_forward", _log_softmax_forward_rows, x)


def log_softmax_backward(y, dy):
    """dx = dy - exp(y) * sum(dy), given the forward output y."""
    return _backward("log_softmax_backward", _log_softmax_backward_rows, y, dy)
