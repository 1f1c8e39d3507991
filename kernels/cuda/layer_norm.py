"""Layer normalisation over the last axis on the GPU (``layer_norm.cu``).

Same signatures and semantics as ``kernels/reference.py``: ``x (..., C)`` with
``gamma, beta (C,)``, float32 or float64; forward returns ``y`` and the per-row
``mean`` and ``rstd`` (shape ``x.shape[:-1]``) that backward reuses.
"""

from __future__ import annotations

import numpy as np
from minivl.kernels.cuda import loader

_SLAB_ROWS = 16  # LN_SLAB_ROWS in layer_norm.cu: rows a (32, 16) block sums per pass
_MAX_SLABS = 64  # partial sums per column; their reduction is one short loop


def _threads(cols: int) -> int:
    """Whole warps, about four elements per thread, at most 512 threads."""
    return min(512, 32 * max(1, loader.ceil_div(cols, 128)))


def _kernel(name: str, dtype):
    return loader.get_function("layer_norm.cu", f"{name}<{loader.ctype(dtype)}>")


def _check_params(x, gamma, name="gamma"):
    gamma = loader.device_array(gamma, name)
    loader.same_dtype(x=x, **{name: gamma})
    # F.layer_norm validated the shapes at the door; here they are a contract
    assert gamma.shape == (x.shape[-1],), (
        f"{name} must have shape ({x.shape[-1]},) to match x {x.shape}, got {gamma.shape}")
    return gamma


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """(y, mean, rstd) with y = (x - mean) * rstd * gamma + beta over the last axis."""
    xp = loader.xp()
    x = loader.device_array(x, "x", min_ndim=1)
    gamma, beta = _check_params(x, gamma), _check_params(x, beta, "beta")
    cols = x.shape[-1]
    y = xp.empty_like(x)
    mean = xp.empty(x.shape[:-1], dtype=x.dtype)
    rstd = xp.empty(x.shape[:-1], dtype=x.dtype)
    rows = mean.size
    if rows and cols:
        _kernel("layer_norm_forward", x.dtype)(
            (rows, 1, 1), (_threads(cols), 1, 1),
            (x, gamma, beta, y, mean, rstd, np.int32(cols), x.dtype.type(eps)),
        )
    elif rows:  # no columns: the reference's mean of nothing is NaN
        mean[...] = np.nan
        rstd[...] = np.nan
    return y, mean, rstd


def layer_norm_backward(dy, x, gamma, mean, rstd):
    """(dx, dgamma, dbeta) of layer norm, from the forward's saved mean and rstd."""
    xp = loader.xp()
    x = loader.device_array(x, "x", min_ndim=1)
    dy = loader.device_array(dy, "dy")
    mean, rstd = loader.device_array(mean, "mean"), loader.device_array(rstd, "rstd")
    loader.same_dtype(x=x, dy=dy, mean=mean, rstd=rstd)
    gamma = _check_params(x, gamma)
    assert dy.shape == x.shape and mean.shape == x.shape[:-1] == rstd.shape, (
        f"dy {dy.shape} must match x {x.shape}, and mean {mean.shape}, rstd {rstd.shape} "
        f"must be x.shape[:-1] = {x.shape[:-1]}"
    )
    rows, cols = mean.size, x.shape[-1]
    dx = xp.empty_like(x)
    dgamma = xp.zeros(cols, dtype=x.dtype)
    dbeta = xp.zeros(cols, dtype=x.dtype)
    if rows == 0 or cols == 0:
        return dx, dgamma, dbeta

    _kernel("layer_norm_backward_dx", x.dtype)(
        (rows, 1, 1), (_threads(cols), 1, 1), (dy, x, gamma, mean, rstd, dx, np.int32(cols))
    )
    # dgamma, dbeta: partial sums over slabs of rows, then one sum over the slabs
    slabs = min(_MAX_SLABS, loader.ceil_div(rows, _SLAB_ROWS))
    partial_gamma = xp.empty((slabs, cols), dtype=x.dtype)
    partial_beta = xp.empty((slabs, cols), dtype=x.dtype)
    _kernel("layer_norm_backward_params_partial", x.dtype)(
        (loader.ceil_div(cols, 32), slabs, 1), (32, _SLAB_ROWS, 1),
        (dy, x, mean, rstd, partial_gamma, partial_beta, np.int32(rows), np.int32(cols)),
    )
    _kernel("layer_norm_backward_params_reduce", x.dtype)(
        (loader.ceil_div(cols, 256), 1, 1), (256, 1, 1),
        (partial_gamma, partial_beta, dgamma, dbeta, np.int32(slabs), np.int32(cols)),
    )
    return dx, dgamma, dbeta
