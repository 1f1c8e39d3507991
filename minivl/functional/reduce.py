"""Reductions over axes: sum, mean, max, var (each with ``keepdims``)."""

from __future__ import annotations

from minivl.functional._util import normalize_axis
from minivl.tensor import Function, array_module


def _expand_back(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input again."""
    if not keepdims:
        g = g.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return g


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand_back(g, ctx.shape, ctx.axes, ctx.keepdims)
        return array_module(g).broadcast_to(g, ctx.shape)


class Max(Function):
    """Max over axes; ties share the gradient equally (so it stays a true gradient)."""

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        y = a.max(axis=axis, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axis, keepdims
        return y if keepdims else y.reshape([n for i, n in enumerate(a.shape) if i not in axis])

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved
        hit = a == y
        count = hit.sum(axis=ctx.axes, keepdims=True)
        g = _expand_back(g, ctx.shape, ctx.axes, ctx.keepdims)
        return hit * (g / count).astype(a.dtype, copy=False)


def sum(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    """Sum over ``axis`` (an int, a tuple, or None for all)."""
    return Sum.apply(x, axis=normalize_axis(axis, x.ndim), keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``."""
    axes = normalize_axis(axis, x.ndim)
    n = 1
    for a in axes:
        n *= x.shape[a]
    return sum(x, axes, keepdims) * (1.0 / n)


def max(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    """Maximum over ``axis``."""
    if x.size == 0:
        raise ValueError(f"max() of an empty tensor of shape {x.shape}")
    return Max.apply(x, axis=normalize_axis(axis, x.ndim), keepdims=keepdims)


def var(x, axis=None, keepdims=False, correction=0):
    """Variance over ``axis`` (population variance unless ``correction=1``)."""
    axes = normalize_axis(axis, x.ndim)
    n = 1
    for a in axes:
        n *= x.shape[a]
    xc = x - mean(x, axes, keepdims=True)
    return sum(xc * xc, axes, keepdims) * (1.0 / (n - correction))
