"""Softmax, log-softmax and the Gumbel-softmax relaxation (DALL-E's dVAE, S25).

softmax and log_softmax run through the kernel backend; the reference math is
in ``kernels/reference.py``: subtract the row max (stable for logits of
+-1e4), and a fully masked row of -inf gives zeros rather than NaN.
"""

from __future__ import annotations

import numpy as np

from minivl import backend
from minivl.functional._util import check_float, normalize_axis
from minivl.random import rng as _global_rng
from minivl.tensor import Function, Tensor, array_module


def _to_last(x, axis):
    """``x`` with ``axis`` moved last, where the kernels work (a view, no copy)."""
    return x if axis == x.ndim - 1 else array_module(x).moveaxis(x, axis, -1)


def _from_last(y, axis):
    """Undo ``_to_last``: the last axis goes back to ``axis``."""
    return y if axis == y.ndim - 1 else array_module(y).moveaxis(y, -1, axis)


class Softmax(Function):
    """y = softmax(x) along ``axis``; dx = y * (dy - sum(dy * y)) (``softmax_backward``)."""

    @staticmethod
    def forward(ctx, x, axis):
        y = backend.for_array(x).softmax_forward(_to_last(x, axis))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return _from_last(y, axis)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return _from_last(backend.for_array(g).softmax_backward(y, _to_last(g, ctx.axis)), ctx.axis)


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``; dx = dy - exp(y) sum(dy) (``log_softmax_backward``)."""

    @staticmethod
    def forward(ctx, x, axis):
        y = backend.for_array(x).log_softmax_forward(_to_last(x, axis))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return _from_last(y, axis)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return _from_last(backend.for_array(g).log_softmax_backward(y, _to_last(g, ctx.axis)), ctx.axis)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``."""
    check_float(x, "softmax: x")
    return Softmax.apply(x, axis=normalize_axis(axis, x.ndim)[0])


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis`` (more accurate than log(softmax(x)))."""
    check_float(x, "log_softmax: x")
    return LogSoftmax.apply(x, axis=normalize_axis(axis, x.ndim)[0])


def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) along ``axis``, computed stably."""
    from minivl.functional.elementwise import exp, log
    from minivl.functional.reduce import max as _max
    from minivl.functional.reduce import sum as _sum

    m = Tensor(_max(x.detach(), axis, keepdims=True).data)  # a constant shift: no gradient needed
    out = log(_sum(exp(x - m), axis, keepdims=True)) + m
    if keepdims:
        return out
    axes = normalize_axis(axis, x.ndim)
    return out.reshape([n for i, n in enumerate(out.shape) if i not in axes])


def gumbel_softmax(logits, tau=1.0, hard=False, axis=-1, generator=None):
    """Sample a relaxed one-hot vector: softmax((logits + Gumbel noise) / tau).

    As ``tau`` -> 0 the samples approach one-hot codes (DALL-E anneals tau from
    1 towards 1/16). With ``hard=True`` the forward value is the exact one-hot
    argmax, while the gradient is that of the soft sample (straight-through).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    g = generator or _global_rng()
    u = g.random(logits.shape)
    gumbel = (-np.log(-np.log(u + 1e-20) + 1e-20)).astype(logits.dtype)
    y = softmax((logits + gumbel) * (1.0 / tau), axis=axis)
    if not hard:
        return y
    ax = normalize_axis(axis, logits.ndim)[0]
    index = np.argmax(y.data, axis=ax)
    one_hot = (np.arange(logits.shape[ax]).reshape([-1 if i == ax else 1 for i in range(logits.ndim)])
               == np.expand_dims(index, ax)).astype(logits.dtype)
    # value: one_hot; gradient: d y (the soft sample)
    return y + Tensor(one_hot - y.data)
