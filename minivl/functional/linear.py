"""Matrix products: batched ``matmul`` (through the kernel backend) and ``linear``."""

from __future__ import annotations

import numpy as np

from minivl import backend
from minivl.functional._util import unbroadcast
from minivl.tensor import Function


class MatMul(Function):
    """C = A @ B with broadcasting batch axes; dA = dC B^T, dB = A^T dC."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return backend.for_array(a).matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        mm = backend.for_array(g).matmul
        # 1-D operands are treated as (1, K) and (K, 1) matrices, as NumPy does
        a2 = a if a.ndim > 1 else a[None, :]
        b2 = b if b.ndim > 1 else b[:, None]
        if b.ndim == 1:
            g = g[..., None]
        if a.ndim == 1:
            g = g[..., None, :]
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(mm(g, b2.swapaxes(-1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            if b2.ndim == 2:
                # b meets every batch row of a: fold the batch axes into one big GEMM
                gb = mm(_broadcast_rows(a2, g).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = unbroadcast(mm(a2.swapaxes(-1, -2), g), b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def _broadcast_rows(a2, g):
    """``a2`` broadcast to ``g``'s batch shape, flattened to (rows, K)."""
    from minivl.tensor import array_module

    full = array_module(a2).broadcast_to(a2, g.shape[:-1] + a2.shape[-1:])
    return full.reshape(-1, a2.shape[-1])


def matmul(a, b):
    """``a @ b``: matrix product, batched over leading axes with broadcasting."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs at least 1-D operands, got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(
            f"matmul: inner dimensions differ, a has shape {a.shape} and b has shape {b.shape}"
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: the batch axes of a {a.shape[:-2]} and b {b.shape[:-2]} do not broadcast "
            f"(a has shape {a.shape}, b has shape {b.shape})"
        ) from None
    return MatMul.apply(a, b)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` with ``weight (out, in)``, PyTorch's layout."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has {x.shape[-1]} features (shape {x.shape}), weight expects "
            f"{weight.shape[1]} (weight shape {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)


class Linear(Function):
    """y = x W^T + b as one node: ``x (..., in)``, ``W (out, in)``, ``b (out,)``.

    The same math as ``matmul(x, weight.T) + bias``, with fewer passes over
    memory: the bias is added into the product's fresh output, and the
    gradients come out in the parameters' own layout,

        dx = dy W,   dW = dy^T x,   db = sum of dy over every row,

    with the batch axes of ``x`` folded into the rows of one GEMM.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        x2 = x.reshape(-1, x.shape[-1])  # (R, in)
        y = backend.for_array(x).matmul(x2, weight.T)  # (R, out)
        if bias is not None and bias.dtype == y.dtype:
            y += bias  # in place: no second (R, out) array
        elif bias is not None:
            y = y + bias  # promotes, e.g. a float64 bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        mm = backend.for_array(g).matmul
        g2 = g.reshape(-1, g.shape[-1])  # (R, out)
        gx = mm(g2, weight).reshape(x.shape) if ctx.needs_input_grad[0] else None
        gw = mm(g2.T, x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None  # (out, in)
        gb = g2.sum(axis=0) if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2] else None
        return (gx, gw) if len(ctx.needs_input_grad) == 2 else (gx, gw, gb)
