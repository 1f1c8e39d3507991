"""Layer norm (through the kernel backend), L2 normalisation and dropout."""

from __future__ import annotations

import numpy as np

from minivl import backend
from minivl.functional._util import check_float
from minivl.functional.elementwise import mul, sqrt
from minivl.functional.reduce import sum as _sum
from minivl.random import device_rng
from minivl.random import rng as _global_rng
from minivl.tensor import Function, Tensor, array_module, is_grad_enabled


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        y, mean, rstd = backend.for_array(x).layer_norm_forward(x, gamma, beta, eps)
        ctx.save_for_backward(x, gamma, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, gamma, mean, rstd = ctx.saved
        return backend.for_array(g).layer_norm_backward(g, x, gamma, mean, rstd)


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise the last axis to zero mean / unit variance, then ``* weight + bias``."""
    check_float(x, "layer_norm: x")
    if x.ndim == 0:
        raise ValueError("layer_norm: x needs at least one axis (the one normalised), got a scalar")
    d = x.shape[-1]
    if weight.shape != (d,) or bias.shape != (d,):
        raise ValueError(
            f"layer_norm: weight and bias must have shape ({d},) for input {x.shape}, "
            f"got {weight.shape} and {bias.shape}"
        )
    return LayerNorm.apply(x, weight, bias, eps=eps)


def l2_normalize(x, axis=-1, eps=1e-12):
    """``x / ||x||`` along ``axis`` (CLIP's embeddings live on the unit sphere)."""
    return x * (1.0 / sqrt(_sum(x * x, axis, keepdims=True) + eps))


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    xp = array_module(x.data)
    if generator is None and xp is not np:  # on the GPU: draw the mask there, no host draw or copy
        u = device_rng(xp).random_sample(x.shape, dtype=np.float32)
        keep = (u >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    else:
        g = generator or _global_rng()
        keep = (g.random(x.shape) >= p).astype(x.dtype) * np.asarray(1.0 / (1.0 - p), x.dtype)
        keep = xp.asarray(keep)  # drawn on the host (the generator's), moved to x's device
    return mul(x, Tensor(keep)) if is_grad_enabled() else Tensor(x.data * keep)
