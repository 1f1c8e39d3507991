"""Elementwise differentiable ops: arithmetic, exp / log / sqrt, selection and casts.

The activation functions (tanh, sigmoid, ReLU, GELU) are in ``activations.py``.

Each op is a ``Function`` whose backward is the derivative written out by hand;
``tests/functional/test_elementwise_and_reduce.py`` checks every one against central differences.
Binary ops broadcast like NumPy; their gradients are summed back to each
input's shape (``unbroadcast``).
"""

from __future__ import annotations

import numpy as np

from minivl.functional._util import as_operand, unbroadcast
from minivl.tensor import Function, Tensor, array_module

# --------------------------------------------------------------------------- arithmetic


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g * b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g / b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** p for a constant exponent p."""

    @staticmethod
    def forward(ctx, a, p):
        ctx.save_for_backward(a)
        ctx.p = p
        return a**p

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * ctx.p * a ** (ctx.p - 1)


def add(a, b):
    """a + b with broadcasting."""
    return Add.apply(as_operand(a, b), as_operand(b, a))


def sub(a, b):
    """a - b with broadcasting."""
    return Sub.apply(as_operand(a, b), as_operand(b, a))


def mul(a, b):
    """a * b with broadcasting."""
    return Mul.apply(as_operand(a, b), as_operand(b, a))


def div(a, b):
    """a / b with broadcasting."""
    return Div.apply(as_operand(a, b), as_operand(b, a))


def neg(a):
    return Neg.apply(a)


def pow(a, p):
    """a ** p, with p a Python number (a tensor exponent: use exp(p * log(a)))."""
    if isinstance(p, Tensor):
        return exp(mul(p, log(a)))
    return Pow.apply(a, p=p)


# --------------------------------------------------------------------------- unary math


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = array_module(a).exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved[0]


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        y = array_module(a).sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return g / (2 * ctx.saved[0])


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def sqrt(a):
    return Sqrt.apply(a)


# --------------------------------------------------------------------------- selection


class Where(Function):
    @staticmethod
    def forward(ctx, a, b, cond):
        ctx.cond = cond
        ctx.shapes = a.shape, b.shape
        return array_module(a).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        zero = g.dtype.type(0)
        ga = unbroadcast(array_module(g).where(ctx.cond, g, zero), ctx.shapes[0])
        gb = unbroadcast(array_module(g).where(ctx.cond, zero, g), ctx.shapes[1])
        return ga, gb


def _mask_array(cond):
    cond = cond.data if isinstance(cond, Tensor) else cond
    if cond.dtype != bool:
        raise TypeError(f"condition / mask must be boolean, got dtype {cond.dtype}")
    return cond


def where(cond, a, b):
    """``a`` where ``cond`` is True, else ``b`` (cond is a boolean array, not differentiated)."""
    a, b = as_operand(a, b), as_operand(b, a)
    return Where.apply(a, b, cond=_mask_array(cond))


def masked_fill(x, mask, value):
    """``x`` with the positions where ``mask`` is True replaced by ``value``."""
    return where(mask, as_operand(value, x), x)


class AsType(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype)


def astype(a, dtype):
    """Cast to ``dtype``; the gradient is cast back."""
    return AsType.apply(a, dtype=np.dtype(dtype))
