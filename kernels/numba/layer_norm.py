"""Layer normalisation over the last axis, forward and backward, as Numba kernels.

Same signatures and semantics as ``reference.layer_norm_forward`` /
``layer_norm_backward`` (Ba, Kiros & Hinton, "Layer Normalization", 2016; the
per-token normalisation of every transformer block in the lecture).

Forward: one parallel task per row; the row is read from memory once (the
mean pass brings it into cache; the variance and output passes reuse it),
where NumPy makes a pass and a temporary per operation. The variance is the
two-pass ``mean((x - mean)^2)``, as in the reference, not ``E[x^2] - mean^2``,
which cancels catastrophically for rows with a large mean.

Backward: with xhat = (x - mean) * rstd and g = dy * gamma,
dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) row by row; dgamma and dbeta
are sums over all rows, so rows are split into a fixed number of chunks, each
chunk sums into its own partial row (no two threads write the same memory),
and the partials are added at the end: deterministic for a given shape.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._parallel import SERIAL_BELOW_LIGHT, parallel_kernel
from ._rows import as_rows, float_dtype
from .vmath import JIT_OPTIONS

# partial sums for dgamma / dbeta: enough chunks to share among threads,
# few enough that adding them up is negligible
_CHUNKS = 64


@parallel_kernel(serial_below=SERIAL_BELOW_LIGHT, **JIT_OPTIONS)
def _forward_rows(x, gamma, beta, eps, y, mean, rstd):
    R, C = x.shape
    n = x.dtype.type(C)  # a float of x's type: dividing by an int would promote to float64
    for r in prange(R):
        xr, yr = x[r], y[r]  # (C,)
        s = xr.dtype.type(0)
        for j in range(C):
            s += xr[j]
        mu = s / n
        v = xr.dtype.type(0)
        for j in range(C):
            d = xr[j] - mu
            v += d * d
        rs = xr.dtype.type(1) / math.sqrt(v / n + eps)
        for j in range(C):
            yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j]
        mean[r], rstd[r] = mu, rs


@parallel_kernel(serial_below=SERIAL_BELOW_LIGHT, **JIT_OPTIONS)
def _backward_rows(dy, x, gamma, mean, rstd, dx, dgamma_part, dbeta_part):
    R, C = x.shape
    n = x.dtype.type(C)
    n_chunks = dgamma_part.shape[0]
    for c in prange(n_chunks):
        dg, db = dgamma_part[c], dbeta_part[c]  # (C,) partial sums of this chunk
        for r in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr, dyr, dxr = x[r], dy[r], dx[r]
            mu, rs = mean[r], rstd[r]
            g_mean = xr.dtype.type(0)  # mean(g)
            gx_mean = xr.dtype.type(0)  # mean(g * xhat)
            for j in range(C):
                xhat = (xr[j] - mu) * rs
                g = dyr[j] * gamma[j]
                g_mean += g
                gx_mean += g * xhat
                dg[j] += dyr[j] * xhat
                db[j] += dyr[j]
            g_mean /= n
            gx_mean /= n
            for j in range(C):
                xhat = (xr[j] - mu) * rs
                dxr[j] = rs * (dyr[j] * gamma[j] - g_mean - xhat * gx_mean)


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """y = (x - mean) * rstd * gamma + beta over the last axis; returns (y, mean, rstd)."""
    x, gamma, beta = np.asarray(x), np.asarray(gamma), np.asarray(beta)
    assert x.ndim > 0 and gamma.shape == x.shape[-1:] and beta.shape == x.shape[-1:], (
        f"layer_norm_forward: gamma and beta must have shape (C,) = x.shape[-1:], got "
        f"x.shape={x.shape}, gamma.shape={gamma.shape}, beta.shape={beta.shape}"
    )
    dtype = float_dtype("layer_norm_forward", x)
    rows = as_rows(x, dtype)  # (R, C)
    g, b = np.ascontiguousarray(gamma, dtype), np.ascontiguousarray(beta, dtype)
    y = np.empty_like(rows)
    mean = np.empty(rows.shape[0], dtype)  # (R,)
    rstd = np.empty(rows.shape[0], dtype)
    if rows.size:
        _forward_rows(rows, g, b, dtype.type(eps), y, mean, rstd)
    elif rows.shape[0]:  # zero-width rows: NumPy's mean of nothing is NaN
        mean[:], rstd[:] = np.nan, np.nan
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


def layer_norm_backward(dy, x, gamma, mean, rstd):
    """Gradients (dx, dgamma, dbeta) of ``layer_norm_forward``."""
    dy, x, gamma = np.asarray(dy), np.asarray(x), np.asarray(gamma)
    mean, rstd = np.asarray(mean), np.asarray(rstd)
    assert (x.ndim > 0 and dy.shape == x.shape and gamma.shape == x.shape[-1:]
            and mean.shape == x.shape[:-1] and rstd.shape == x.shape[:-1]), (
        "layer_norm_backward: expected dy.shape == x.shape, gamma.shape == x.shape[-1:], "
        f"mean.shape == rstd.shape == x.shape[:-1]; got dy={dy.shape}, x={x.shape}, "
        f"gamma={gamma.shape}, mean={mean.shape}, rstd={rstd.shape}"
    )
    dtype = float_dtype("layer_norm_backward", dy, x)
    dy_rows, x_rows = as_rows(dy, dtype), as_rows(x, dtype)  # (R, C)
    R, C = x_rows.shape
    dx = np.empty_like(x_rows)
    n_chunks = max(1, min(_CHUNKS, R))
    dgamma_part = np.zeros((n_chunks, C), dtype)
    dbeta_part = np.zeros((n_chunks, C), dtype)
    if x_rows.size:
        _backward_rows(dy_rows, x_rows, np.ascontiguousarray(gamma, dtype),
                       np.ascontiguousarray(mean, dtype).ravel(),
                       np.ascontiguousarray(rstd, dtype).ravel(), dx, dgamma_part, dbeta_part)
    return dx.reshape(x.shape), dgamma_part.sum(axis=0), dbeta_part.sum(axis=0)
