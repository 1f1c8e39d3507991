"""GELU forward and backward on the GPU (``gelu.cu``): exact (erf), tanh or sigmoid form.

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
