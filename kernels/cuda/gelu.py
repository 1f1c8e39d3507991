"""GELU forward and backward on the GPU (``gelu.cu``): exact (erf), tanh or sigmoid form;
and GELU(x + bias) fused (``bias_gelu_forward`` / ``bias_gelu_backward``, the MLP's
first bias and activation, with dbias summed per chunk of rows then over chunks).

Same signatures and semantics as ``kernels/reference.py``; float32 or float64,
any shape (elementwise over the flattened array).
"""

from __future__ import annotations

import numpy as np
from minivl.kernels.cuda import loader

_THREADS = 256
_MAX_BLOCKS = 8192  # the kernels loop over the rest (grid-stride)
_FORMS = {"none": 0, "tanh": 1, "sigmoid": 2}  # gelu.cu's GELU_ERF, GELU_TANH, GELU_SIGMOID


def _form(approximate: str) -> np.int32:
    if approximate not in _FORMS:
        raise ValueError(f"approximate must be one of {tuple(_FORMS)}, got {approximate!r}")
    return np.int32(_FORMS[approximate])


def _launch(name: str, out, *args) -> None:
    n = out.size
    if n == 0:
        return
    blocks = min(_MAX_BLOCKS, loader.ceil_div(n, _THREADS))
    kernel = loader.get_function("gelu.cu", f"{name}<{loader.ctype(out.dtype)}>")
    kernel((blocks, 1, 1), (_THREADS, 1, 1), args)


def gelu_forward(x, approximate="none"):
    """GELU(x) = x * Phi(x); ``approximate`` is 'none' (erf), 'tanh' (GPT-2) or 'sigmoid' (CLIP)."""
    form = _form(approximate)
    x = loader.device_array(x, "x")
    y = loader.xp().empty_like(x)
    _launch("gelu_forward", y, x, y, np.int64(x.size), form)
    return y


def gelu_backward(x, dy, approximate="none"):
    """dy * dGELU/dx."""
    form = _form(approximate)
    x, dy = loader.device_array(x, "x"), loader.device_array(dy, "dy")
    loader.same_dtype(x=x, dy=dy)
    assert x.shape == dy.shape, f"x {x.shape} and dy {dy.shape} must have the same shape"
    dx = loader.xp().empty_like(x)
    _launch("gelu_backward", dx, x, dy, dx, np.int64(x.size), form)
    return dx


_BIAS_CHUNK_ROWS = 64  # rows per partial sum of dbias


def bias_gelu_forward(x, bias, approximate="none"):
    """GELU(x + bias), bias of shape ``x.shape[-1:]``."""
    form = _form(approximate)
    x, bias = loader.device_array(x, "x"), loader.device_array(bias, "bias")
    loader.same_dtype(x=x, bias=bias)
    assert x.ndim >= 1 and bias.shape == x.shape[-1:], f"bias {bias.shape} must have shape {x.shape[-1:]}"
    y = loader.xp().empty_like(x)
    _launch("bias_gelu_forward", y, x, bias, y, np.int64(x.size), np.int32(x.shape[-1]), form)
    return y


def bias_gelu_backward(x, bias, dy, approximate="none"):
    """``(dx, dbias)``: dy * GELU'(x + bias) and its sum over every axis but the last."""
    form = _form(approximate)
    x, bias, dy = (loader.device_array(a, n) for a, n in ((x, "x"), (bias, "bias"), (dy, "dy")))
    loader.same_dtype(x=x, bias=bias, dy=dy)
    assert x.shape == dy.shape and bias.shape == x.shape[-1:], (
        f"x {x.shape}, dy {dy.shape} and bias {bias.shape}: x and dy must match, bias be x.shape[-1:]")
    xp = loader.xp()
    cols = x.shape[-1]
    rows = x.size // cols if cols else 0
    dx = xp.empty_like(x)
    dbias = xp.zeros((cols,), x.dtype)
    if rows == 0 or cols == 0:
        return dx, dbias
    chunks = loader.ceil_div(rows, _BIAS_CHUNK_ROWS)
    partial = xp.empty((chunks, cols), x.dtype)
    t = loader.ctype(x.dtype)
    col_blocks = loader.ceil_div(cols, _THREADS)
    loader.get_function("gelu.cu", f"bias_gelu_backward<{t}>")(
        (col_blocks, chunks, 1), (_THREADS, 1, 1),
        (x, bias, dy, dx, partial, np.int64(rows), np.int32(cols), np.int64(_BIAS_CHUNK_ROWS), form))
    loader.get_function("gelu.cu", f"bias_grad_reduce<{t}>")(
        (col_blocks, 1, 1), (_THREADS, 1, 1), (partial, dbias, np.int32(chunks), np.int32(cols)))
    return dx, dbias
