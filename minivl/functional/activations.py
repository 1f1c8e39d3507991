"""Activation functions as differentiable ops: tanh, sigmoid, ReLU and GELU.

Each is a ``Function`` whose backward is the derivative written out by hand;
``tests/functional/test_elementwise_and_reduce.py`` checks each against central
differences. GELU (Hendrycks & Gimpel, 2016) is the one with a kernel of its
own on every backend (``gelu_forward`` / ``gelu_backward``), in three forms:
the exact erf form (BERT, ViT), GPT-2's tanh form and CLIP's sigmoid form
(QuickGELU).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit as _expit

from minivl import backend
from minivl.functional._util import check_float
from minivl.tensor import Function, array_module


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        y = array_module(a).tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved[0]
        return g * (1 - y * y)


def _sigmoid(a):
    """1 / (1 + exp(-a)) without overflow warnings: SciPy's expit on the CPU."""
    if isinstance(a, np.ndarray):
        return _expit(a)
    xp = array_module(a)
    e = xp.exp(-xp.abs(a))  # exp of a non-positive number only: no overflow
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        y = _sigmoid(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved[0]
        return g * y * (1 - y)


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a > 0)
        return a * (a > 0)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class GELU(Function):
    """GELU(x) = x * Phi(x): the erf form (BERT, ViT), GPT-2's tanh form or CLIP's sigmoid form."""

    @staticmethod
    def forward(ctx, a, approximate="none"):
        ctx.save_for_backward(a)
        ctx.approximate = approximate
        return backend.for_array(a).gelu_forward(a, approximate)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return backend.for_array(a).gelu_backward(a, g, ctx.approximate)


class BiasGELU(Function):
    """GELU(x + bias) as one node: the MLP's first bias and its activation fused
    (``bias_gelu_forward`` / ``bias_gelu_backward``); dx = dy GELU'(x + b), db = its column sum."""

    @staticmethod
    def forward(ctx, a, bias, approximate="none"):
        ctx.save_for_backward(a, bias)
        ctx.approximate = approximate
        return backend.for_array(a).bias_gelu_forward(a, bias, approximate)

    @staticmethod
    def backward(ctx, g):
        a, bias = ctx.saved
        return backend.for_array(a).bias_gelu_backward(a, bias, g, ctx.approximate)


def tanh(a):
    return Tanh.apply(a)


def sigmoid(a):
    """1 / (1 + exp(-a)), computed without overflow."""
    return Sigmoid.apply(a)


def relu(a):
    return ReLU.apply(a)


_GELU_FORMS = ("none", "tanh", "sigmoid")


def gelu(a, approximate="none"):
    """Gaussian Error Linear Unit, x * Phi(x) (Hendrycks & Gimpel, 2016).

    ``approximate`` picks how Phi is computed: 'none' (exact, erf), 'tanh'
    (GPT-2's tanh formula) or 'sigmoid' (Phi(x) ~ sigmoid(1.702 x), CLIP's QuickGELU).
    """
    if approximate not in _GELU_FORMS:
        raise ValueError(f"approximate must be one of {_GELU_FORMS}, got {approximate!r}")
    check_float(a, "gelu: a")
    return GELU.apply(a, approximate=approximate)


def bias_gelu(a, bias, approximate="none"):
    """``gelu(a + bias, approximate)`` with ``bias`` of shape ``(a.shape[-1],)``, in one
    kernel pass forward and one backward (the bias gradient summed in the same sweep)."""
    if approximate not in _GELU_FORMS:
        raise ValueError(f"approximate must be one of {_GELU_FORMS}, got {approximate!r}")
    check_float(a, "bias_gelu: a")
    check_float(bias, "bias_gelu: bias")
    if a.ndim < 1 or bias.shape != a.shape[-1:]:
        raise ValueError(f"bias_gelu: bias must have shape {a.shape[-1:]} (a has shape {a.shape}), "
                         f"got {bias.shape}")
    return BiasGELU.apply(a, bias, approximate=approximate)


def quick_gelu(a):
    """CLIP's QuickGELU, x * sigmoid(1.702 x): the GELU paper's sigmoid approximation."""
    check_float(a, "quick_gelu: a")
    return GELU.apply(a, approximate="sigmoid")
