"""The reference kernels: the hot paths of minivl written as plain NumPy math.

This file is the *spec*. Every fast version (``kernels/numba``, ``kernels/cuda``)
must agree with these functions, and the property tests in
``tests/kernels/test_numba_*.py`` and ``tests/kernels/test_cuda_*.py`` check
that they do. They work on raw arrays and know nothing of autograd:
``minivl.functional`` calls them through ``minivl.backend``.

Conventions shared by every backend
-----------------------------------
* Softmax-like ops work over the last axis.
* A row whose entries are all ``-inf`` (a fully masked row) gives a softmax of
  zeros, never NaN; its log-sum-exp is ``-inf``.
* Attention takes ``q (B, H, Nq, D)``, ``k, v (B, H, Nk, D)``, an optional
  ``key_padding_mask (B, Nk)`` of booleans (True = a real key, attend to it),
  a ``causal`` flag (query i sees keys j <= i + (Nk - Nq), i.e. the queries are
  the *last* Nq positions, which is what a key/value cache needs), and a
  ``scale`` (usually 1/sqrt(D)). It returns ``o (B, H, Nq, D)`` and
  ``lse (B, H, Nq)``, the log-sum-exp of each row of scaled scores, which the
  backward pass uses to rebuild the probabilities without storing them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfc as _scipy_erfc
from scipy.special import expit as _scipy_expit

# --------------------------------------------------------------------------- matmul


def matmul(a, b):
    """Batched matrix product with NumPy broadcasting over leading axes.

    A stack of matrices times one matrix (every Linear layer) is folded into a
    single 2-D product: one BLAS call instead of a loop over the batch, and
    NumPy only reaches BLAS in its batched loop for contiguous operands.
    """
    if a.ndim > 2 and b.ndim == 2:
        return np.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[1],))
    return np.matmul(a, b)


# --------------------------------------------------------------------------- softmax


def softmax_forward(x):
    """softmax(x)_i = exp(x_i - max) / sum_j exp(x_j - max) over the last axis."""
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0).astype(x.dtype)  # all -inf row: keep exp() = 0
    e = np.exp(x - m)
    s = np.sum(e, axis=-1, keepdims=True)
    return e / np.where(s == 0, 1.0, s).astype(x.dtype)


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)): the Jacobian of softmax applied to dy."""
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


def log_softmax_forward(x):
    """log_softmax(x) = x - logsumexp(x) over the last axis.

    A fully masked row (all -inf) stays all -inf: the log of its zero softmax.
    """
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0).astype(x.dtype)
    with np.errstate(divide="ignore"):
        lse = m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
    return x - np.where(np.isneginf(lse), 0.0, lse).astype(x.dtype)


def log_softmax_backward(y, dy):
    """dx = dy - softmax(x) * sum(dy), with softmax(x) = exp(y)."""
    return dy - np.exp(y) * np.sum(dy, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- layer norm


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """Normalise the last axis to zero mean and unit variance, then scale and shift.

    Returns ``y`` and the per-row ``mean`` and ``rstd`` = 1/sqrt(var + eps)
    (shape ``x.shape[:-1]``), which the backward pass reuses.
    """
    mean = np.mean(x, axis=-1)
    xc = x - mean[..., None]
    var = np.mean(xc * xc, axis=-1)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = xc * rstd[..., None]
    y = xhat * gamma + beta
    return y, mean, rstd


def layer_norm_backward(dy, x, gamma, mean, rstd):
    """Gradients of layer norm for x, gamma and beta.

    With xhat = (x - mean) * rstd and g = dy * gamma:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    """
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy * gamma
    dx = rstd[..., None] * (
        g - np.mean(g, axis=-1, keepdims=True) - xhat * np.mean(g * xhat, axis=-1, keepdims=True)
    )
    lead = tuple(range(dy.ndim - 1))
    dgamma = np.sum(dy * xhat, axis=lead)
    dbeta = np.sum(dy, axis=lead)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- GELU

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SIGMOID_SCALE = 1.702  # Hendrycks & Gimpel's sigmoid fit, Phi(x) ~ sigmoid(1.702 x); CLIP's QuickGELU
_GELU_FORMS = ("none", "tanh", "sigmoid")


def _check_form(name, approximate):
    assert approximate in _GELU_FORMS, f"{name}: approximate must be one of {_GELU_FORMS}, got {approximate!r}"


def _phi(x):
    """The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2 (SciPy's erfc: NumPy has none).

    Written with erfc rather than 1 + erf(x / sqrt 2), which cancels to nothing
    in float32 for x below about -4.
    """
    return (0.5 * _scipy_erfc(-x / math.sqrt(2.0))).astype(x.dtype, copy=False)


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: SciPy's expit for NumPy arrays;
    otherwise (CuPy) exp(min(z, 0)) / (1 + exp(-|z|)), where no exp ever sees a
    positive argument, with no per-element branch. Keeps z's dtype."""
    if isinstance(z, np.ndarray):
        return _scipy_expit(z)
    return np.exp(np.minimum(z, 0.0)) / (1.0 + np.exp(-np.abs(z)))


def gelu_forward(x, approximate="none"):
    """GELU(x) = x * Phi(x), or one of its two approximations of Phi:

    * ``'tanh'`` (GPT-2): Phi(x) ~ (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3);
    * ``'sigmoid'`` (CLIP's QuickGELU): Phi(x) ~ sigmoid(1.702 x).
    """
    _check_form("gelu_forward", approximate)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_tanh_arg(x)))
    if approximate == "sigmoid":
        return x * _sigmoid(_SIGMOID_SCALE * x)
    return x * _phi(x)


def gelu_backward(x, dy, approximate="none"):
    """d GELU / dx, times dy: Phi(x) + x Phi'(x), with Phi the chosen form."""
    _check_form("gelu_backward", approximate)
    if approximate == "tanh":
        x2 = x * x
        t = np.tanh(_tanh_arg(x))
        du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x2)  # d u / d x
        # 0.5 (1 + t) + 0.5 x (1 - t^2) du, with few full-size temporaries
        return dy * 0.5 * (1.0 + t + x * (1.0 - t * t) * du)
    if approximate == "sigmoid":
        z = _SIGMOID_SCALE * x
        s, s_minus = _sigmoid(z), _sigmoid(-z)
        # s + 1.702 x s (1 - s), with 1 - s = sigmoid(-z) computed on its own:
        # no cancellation where s is near 1
        return dy * (s + z * s * s_minus)
    pdf = np.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return dy * (_phi(x) + x * pdf)


def bias_gelu_forward(x, bias, approximate="none"):
    """GELU(x + bias), the bias broadcast along the last axis: the first Linear's
    bias and the MLP's activation as one op (the GEMM before it adds no bias).

    ``approximate`` is one of ``gelu_forward``'s forms.
    """
    return gelu_forward(x + bias, approximate)


def bias_gelu_backward(x, bias, dy, approximate="none"):
    """Gradients of ``bias_gelu_forward``: with z = x + bias and dz = dy * GELU'(z),

    dx = dz;   dbias = the sum of dz over every axis but the last.

    Returns ``(dx, dbias)``.
    """
    dz = gelu_backward(x + bias, dy, approximate)
    return dz, dz.reshape(-1, dz.shape[-1]).sum(axis=0)


def _tanh_arg(x):
    return _SQRT_2_OVER_PI * x * (1.0 + 0.044715 * (x * x))


# --------------------------------------------------------------------------- attention


def attention_mask(nq, nk, key_padding_mask=None, causal=False, batch=1, xp=np):
    """The boolean (B, 1, Nq, Nk) matrix of allowed (query, key) pairs.

    ``xp`` is the array module to build it with (``cupy`` for a mask on the GPU).
    """
    allowed = xp.ones((batch, 1, nq, nk), dtype=bool)
    if causal:
        # query i is position i + (nk - nq): the queries are the last nq positions
        allowed &= xp.tril(xp.ones((nq, nk), dtype=bool), k=nk - nq)[None, None]
    if key_padding_mask is not None:
        allowed &= xp.asarray(key_padding_mask, dtype=bool)[:, None, None, :]
    return allowed


def attention_forward(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """softmax(q k^T * scale + mask) v, and the log-sum-exp of each score row.

    This reference builds the whole (Nq, Nk) score matrix: it is the math, not
    the memory-efficient algorithm (see ``kernels/numba/attention.py``).
    """
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scale, q.dtype)  # (B, H, Nq, Nk)
    allowed = attention_mask(Nq, Nk, key_padding_mask, causal, batch=B)
    s = np.where(allowed, s, np.asarray(-np.inf, q.dtype))
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0).astype(q.dtype)
    p = np.exp(s - m)
    l = np.sum(p, axis=-1, keepdims=True)
    o = np.matmul(p / np.where(l == 0, 1.0, l).astype(q.dtype), v)  # (B, H, Nq, D)
    with np.errstate(divide="ignore"):
        lse = (m + np.log(l))[..., 0]  # (B, H, Nq); -inf for fully masked rows
    return o, lse.astype(q.dtype)


def attention_backward(q, k, v, o, lse, do, key_padding_mask=None, causal=False, scale=None):
    """Gradients of attention, rebuilding P = exp(S - lse) from the saved lse.

    dV = P^T dO;  dP = dO V^T;  dS = P * (dP - rowsum(dO * O));
    dQ = dS K * scale;  dK = dS^T Q * scale.
    """
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scale, q.dtype)
    allowed = attention_mask(Nq, Nk, key_padding_mask, causal, batch=B)
    safe_lse = np.where(np.isfinite(lse), lse, 0.0)[..., None]
    p = np.where(allowed, np.exp(np.where(allowed, s, 0.0) - safe_lse), 0.0).astype(q.dtype)
    dv = np.matmul(np.swapaxes(p, -1, -2), do)
    dp = np.matmul(do, np.swapaxes(v, -1, -2))
    delta = np.sum(do * o, axis=-1, keepdims=True)  # = rowsum(P * dP)
    ds = p * (dp - delta)
    dq = np.matmul(ds, k) * np.asarray(scale, q.dtype)
    dk = np.matmul(np.swapaxes(ds, -1, -2), q) * np.asarray(scale, q.dtype)
    return dq, dk, dv
