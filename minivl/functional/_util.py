"""Small helpers shared by the differentiable ops."""

from __future__ import annotations

import numpy as np

from minivl.tensor import Tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` back down to ``shape``, undoing NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size
    1; the gradient of a copy is the sum over the copies.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def as_operand(x, like):
    """A Tensor for ``x``; Python scalars take the dtype of the tensor they meet, and a
    host array meeting a tensor on the GPU (a mask, a weight made with NumPy) joins it
    there, as the ops that take ids and masks do (minivl/device.py)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        dtype = like.dtype if isinstance(like, Tensor) and like.dtype.kind == "f" else np.float32
        return Tensor(np.asarray(x, dtype=dtype))
    if isinstance(x, np.ndarray) and isinstance(like, Tensor):
        from minivl.device import device_of, to_array

        if device_of(like) == "cuda":
            x = to_array(x, "cuda")
    return Tensor(x)


def normalize_axis(axis, ndim):
    """``axis`` as a tuple of non-negative ints (None means every axis)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dims")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def check_float(x: Tensor, name: str):
    """TypeError naming ``name`` unless ``x`` holds floats (what every kernel computes in)."""
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype} (shape {x.shape})")
