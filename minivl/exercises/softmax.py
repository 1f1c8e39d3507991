"""Exercises on softmax and layer norm, the two normalisations of every transformer block.

The references are minivl's kernels (``kernels/reference.py``): softmax over
the last axis with the maximum subtracted, its backward ``y * (dy - sum(dy y))``,
and the layer-norm backward of Ba et al. (2016), used by BERT, GPT and ViT
alike (lecture S01).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.exercises.draw import DTYPES, SCALES, SEEDS, array, float_array, sizes
from minivl.kernels import reference as R

# --------------------------------------------------------------------------- softmax

SOFTMAX_STUB = '''
def softmax(x):
    """Softmax over the last axis of ``x`` (any shape, float32 or float64).

        softmax(x)_i = exp(x_i) / sum_j exp(x_j)

    Returns an array of the same shape and dtype whose last axis sums to 1.
    It must not overflow: inputs can be as large as 1e3 or more.
    """
    raise NotImplementedError("softmax")
'''


def _softmax_no_max(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_first_axis(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _softmax_loop(x):
    """A row-by-row version written differently: checkers must accept it."""
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        e = np.exp(row - row.max())
        out[idx] = e / e.sum()
    return out


SOFTMAX = Exercise(
    name="softmax", slide="S15", part="ex0_transformers", title="softmax",
    stub=SOFTMAX_STUB, reference=R.softmax_forward,
    solution="kernels/reference.py::softmax_forward",
    inputs=st.fixed_dictionaries({"x": float_array(1, 3)}),
    mistakes=[
        Mistake("no max-subtraction", "exp(x) overflows to inf for x around 90 (float32) or 710 (float64); "
                "subtract the row maximum first: softmax(x) = softmax(x - max x).", _softmax_no_max),
        Mistake("wrong axis", "normalise over the last axis (axis=-1, keepdims=True), not the first.",
                _softmax_first_axis),
    ],
    hint="subtract the maximum of each row, exponentiate, divide by the row sum; keep the dtype.",
)
SOFTMAX.alternative = _softmax_loop

# --------------------------------------------------------------------------- softmax backward

SOFTMAX_BACKWARD_STUB = '''
def softmax_backward(y, dy):
    """The gradient of a loss with respect to x, where y = softmax(x) over the last axis.

    ``y`` is the softmax output and ``dy`` the gradient with respect to y, both
    of the same shape. The Jacobian of softmax is dy_i/dx_j = y_i (delta_ij - y_j), so

        dx_j = y_j * (dy_j - sum_i dy_i y_i)

    Returns dx, same shape and dtype as y.
    """
    raise NotImplementedError("softmax_backward")
'''


@st.composite
def _softmax_backward_inputs(draw):
    x = draw(float_array(1, 3, scales=st.sampled_from([1.0, 3.0])))
    dy = array(x.shape, x.dtype, draw(SCALES), draw(SEEDS))
    return {"y": R.softmax_forward(x), "dy": dy}


SOFTMAX_BACKWARD = Exercise(
    name="softmax_backward", slide="S15", part="ex0_transformers", title="softmax backward",
    stub=SOFTMAX_BACKWARD_STUB, reference=R.softmax_backward,
    solution="kernels/reference.py::softmax_backward",
    inputs=_softmax_backward_inputs(),
    mistakes=[
        Mistake("diagonal only", "softmax couples the entries of a row: besides y * dy there is the term "
                "- y * sum(dy * y), from the off-diagonal Jacobian entries -y_i y_j.", lambda y, dy: y * dy),
        Mistake("sum over the wrong axis", "the sum of dy * y runs over the softmax axis (axis=-1, keepdims=True).",
                lambda y, dy: y * (dy - np.sum(dy * y, axis=0, keepdims=True))),
        Mistake("sign", "dx = y * (dy - sum(dy * y)): the sum is subtracted.",
                lambda y, dy: y * (dy + np.sum(dy * y, axis=-1, keepdims=True))),
    ],
    hint="dx = y * (dy - (dy * y).sum(axis=-1, keepdims=True)).",
    scale=lambda y, dy: np.max(np.abs(dy), initial=0.0),
)
def _softmax_backward_jacobian(y, dy):
    """Through the explicit Jacobian J_ij = y_i (delta_ij - y_j): dx_j = sum_i dy_i J_ij."""
    jacobian = np.eye(y.shape[-1], dtype=y.dtype) * y[..., None] - y[..., :, None] * y[..., None, :]
    return np.einsum("...i,...ij->...j", dy, jacobian)


SOFTMAX_BACKWARD.alternative = _softmax_backward_jacobian

# --------------------------------------------------------------------------- layer norm backward

LAYER_NORM_BACKWARD_STUB = '''
def layer_norm_backward(dy, x, gamma, eps):
    """Gradients of y = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps), over the last axis.

    ``x`` and ``dy`` have shape (..., C); ``gamma`` has shape (C,); mean and var
    (the biased variance) are taken over the last axis. With g = dy * gamma and
    rstd = 1 / sqrt(var + eps):

        dx     = rstd * (g - mean(g) - xhat * mean(g * xhat))      (means over the last axis)
        dgamma = sum of dy * xhat over every axis but the last      (C,)
        dbeta  = sum of dy over every axis but the last             (C,)

    Returns the tuple (dx, dgamma, dbeta), each in the dtype of x.
    """
    raise NotImplementedError("layer_norm_backward")
'''


def _layer_norm_backward(dy, x, gamma, eps):
    _, mean, rstd = R.layer_norm_forward(x, gamma, np.zeros_like(gamma), eps)
    return R.layer_norm_backward(dy, x, gamma, mean, rstd)


def _xhat(x, eps):
    xc = x - x.mean(-1, keepdims=True)
    return xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)


def _ln_no_variance_term(dy, x, gamma, eps):
    xhat = _xhat(x, eps)
    rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
    g = dy * gamma
    lead = tuple(range(x.ndim - 1))
    return rstd * (g - g.mean(-1, keepdims=True)), (dy * xhat).sum(lead), dy.sum(lead)


def _ln_no_gamma(dy, x, gamma, eps):
    return _layer_norm_backward(dy, x, np.ones_like(gamma), eps)[0], *_layer_norm_backward(dy, x, gamma, eps)[1:]


def _ln_loop(dy, x, gamma, eps):
    """Row by row, through the explicit Jacobian of xhat: slow, clearly correct."""
    C = x.shape[-1]
    dx = np.zeros_like(x)
    dgamma = np.zeros_like(gamma)
    dbeta = np.zeros_like(gamma)
    for idx in np.ndindex(x.shape[:-1]):
        r, d = x[idx].astype(np.float64), dy[idx].astype(np.float64)
        mu, var = r.mean(), r.var()
        s = 1 / np.sqrt(var + eps)
        xhat = (r - mu) * s
        J = s * (np.eye(C) - 1.0 / C - np.outer(xhat, xhat) / C)  # d xhat_i / d x_j
        dx[idx] = (d * gamma) @ J
        dgamma += d * xhat
        dbeta += d
    return dx, dgamma, dbeta


@st.composite
def _layer_norm_inputs(draw):
    shape = tuple(draw(st.lists(sizes(1, 5), min_size=1, max_size=2))) + (draw(sizes(2, 7)),)
    dtype = draw(DTYPES)
    x = array(shape, dtype, draw(st.sampled_from([1.0, 30.0, 1e-1])), draw(SEEDS))
    return {"dy": array(shape, dtype, 1.0, draw(SEEDS)), "x": x,
            "gamma": array(shape[-1:], dtype, 1.0, draw(SEEDS)), "eps": 1e-5}


LAYER_NORM_BACKWARD = Exercise(
    name="layer_norm_backward", slide="S01", part="ex0_transformers", title="layer norm backward",
    stub=LAYER_NORM_BACKWARD_STUB, reference=_layer_norm_backward,
    solution="kernels/reference.py::layer_norm_backward",
    inputs=_layer_norm_inputs(),
    scale=lambda dy, x, gamma, eps: np.max(np.abs(dy), initial=0.0) * np.max(np.abs(gamma), initial=0.0)
    / np.sqrt(np.min(x.var(axis=-1), initial=np.inf) + eps),
    mistakes=[
        Mistake("variance held constant", "the variance depends on x too: dx needs the term "
                "- xhat * mean(g * xhat) besides - mean(g).", _ln_no_variance_term),
        Mistake("gamma forgotten in dx", "the gradient reaching xhat is dy * gamma, not dy.", _ln_no_gamma),
    ],
    hint="compute xhat and rstd again from x, then dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).",
)
LAYER_NORM_BACKWARD.alternative = _ln_loop

EXERCISES = [SOFTMAX, SOFTMAX_BACKWARD, LAYER_NORM_BACKWARD]
