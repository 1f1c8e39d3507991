"""Softmax and log-softmax over the last axis on the GPU (``softmax.cu``).

Same signatures and semantics as ``kernels/reference.py``: any leading shape
(flattened into rows, one block per row), float32 or float64, and a row of all
-inf gives a softmax of zeros. For such a row log-softmax gives -inf (the
log of those zeros), where the reference's ``x - lse`` gives NaN.
"""

from __future__ import annotations

import numpy as np
from minivl.kernels.cuda import loader


def _threads(cols: int) -> int:
    """Whole warps, about four elements per thread, at most 512 threads."""
    return min(512, 32 * max(1, loader.ceil_div(cols, 128)))


def _launch(kernel_name: str, out, *arrays) -> None:
    cols = out.shape[-1]
    rows = out.size // cols if cols else 0
    if rows == 0:
        return
    kernel = loader.get_function("softmax.cu", f"{kernel_name}<{loader.ctype(out.dtype)}>")
    kernel((rows, 1, 1), (_threads(cols), 1, 1), (*arrays, out, np.int32(cols)))


def _checked_pair(y, dy):
    y = loader.device_array(y, "y", min_ndim=1)
    dy = loader.device_array(dy, "dy")
    loader.same_dtype(y=y, dy=dy)
    assert y.shape == dy.shape, f"y {y.shape} and dy {dy.shape} must have the same shape"
    return y, dy


def softmax_forward(x):
    """softmax(x) over the last axis."""
    x = loader.device_array(x, "x", min_ndim=1)
    y = loader.xp().empty_like(x)
    _launch("softmax_forward", y, x)
    return y


def log_softmax_forward(x):
    """log_softmax(x) = x - logsumexp(x) over the last axis."""
    x = loader.device_array(x, "x", min_ndim=1)
    y = loader.xp().empty_like(x)
    _launch("log_softmax_forward", y, x)
    return y


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)), ``y`` the softmax output."""
    y, dy = _checked_pair(y, dy)
    dx = loader.xp().empty_like(y)
    _launch("softmax_backward", dx, y, dy)
    return dx


def log_softmax_backward(y, dy):
    """dx = dy - exp(y) * sum(dy), ``y`` the log-softmax output."""
    y, dy = _checked_pair(y, dy)
    dx = loader.xp().empty_like(y)
    _launch("log_softmax_backward", dx, y, dy)
    return dx
