"""Scaled dot-product attention, softmax(Q K^T / sqrt(d) + mask) V (Vaswani et al.).

Two paths compute the same thing:

* the *composed* path builds the (Nq, Nk) weight matrix out of minivl ops, so
  it can return the weights for plotting and accept any additive mask;
* the *fused* path is one ``Function`` whose forward and backward are the
  ``attention_forward`` / ``attention_backward`` kernels of the active backend
  (FlashAttention-style on numba and cuda: O(N) memory, never an N x N matrix).

``scaled_dot_product_attention`` takes the fused path whenever it can (no
weights requested, no additive mask, no dropout).
"""

from __future__ import annotations

import math

import numpy as np

from minivl import backend
from minivl.functional._util import check_float
from minivl.functional.elementwise import add, masked_fill, mul
from minivl.functional.linear import matmul
from minivl.functional.normalization import dropout as _dropout
from minivl.functional.softmax import softmax
from minivl.tensor import Function, Tensor, array_module


class FusedAttention(Function):
    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, causal, scale):
        o, lse = backend.for_array(q).attention_forward(q, k, v, key_padding_mask, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.options = key_padding_mask, causal, scale
        return o

    @staticmethod
    def backward(ctx, g):
        q, k, v, o, lse = ctx.saved
        kpm, causal, scale = ctx.options
        return backend.for_array(g).attention_backward(q, k, v, o, lse, g, kpm, causal, scale)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _check(q, k, v, key_padding_mask, attn_mask):
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(t, f"attention: {name}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects q, k, v of shape (B, H, N, D); got {q.shape}, {k.shape}, {v.shape}"
        )
    B, H, _, D = q.shape
    if k.shape[:2] != (B, H) or v.shape[:3] != k.shape[:3] or k.shape[3] != D:
        raise ValueError(f"attention: incompatible q {q.shape}, k {k.shape}, v {v.shape}")
    if key_padding_mask is not None and key_padding_mask.shape != (B, k.shape[2]):
        raise ValueError(
            f"key_padding_mask must have shape (B, Nk) = {(B, k.shape[2])}, got {key_padding_mask.shape}"
        )
    if attn_mask is not None:
        try:
            np.broadcast_shapes(attn_mask.shape, (B, H, q.shape[2], k.shape[2]))
        except ValueError:
            raise ValueError(
                f"attn_mask of shape {attn_mask.shape} does not broadcast to (B, H, Nq, Nk) = "
                f"{(B, H, q.shape[2], k.shape[2])}"
            ) from None


def scaled_dot_product_attention(
    q, k, v, key_padding_mask=None, causal=False, attn_mask=None, scale=None,
    dropout_p=0.0, training=False, return_weights=False,
):
    """Attention of queries ``q (B, H, Nq, D)`` over keys/values ``k, v (B, H, Nk, D)``.

    * ``key_padding_mask (B, Nk)``: booleans, True for real keys (padding is False);
    * ``causal``: query i attends to keys j <= i (+ Nk - Nq, for a key/value cache);
    * ``attn_mask``: a float array added to the scores (-inf forbids), or a boolean
      array (True = allowed), broadcast to (B, H, Nq, Nk);
    * ``return_weights``: also return the (B, H, Nq, Nk) attention weights.

    A query whose every key is masked gets a zero output, not NaN.
    """
    xp = array_module(q.data)
    kpm = None if key_padding_mask is None else xp.asarray(_raw(key_padding_mask), dtype=bool)
    am = None if attn_mask is None else xp.asarray(_raw(attn_mask))  # a host mask joins q on the GPU
    _check(q, k, v, kpm, am)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not return_weights and am is None and not (dropout_p and training):
        return FusedAttention.apply(q, k, v, key_padding_mask=kpm, causal=causal, scale=scale)

    B, _, Nq, _ = q.shape
    Nk = k.shape[2]
    s = mul(matmul(q, k.swapaxes(-1, -2)), scale)  # (B, H, Nq, Nk)
    if am is not None and am.dtype != bool:
        s = add(s, Tensor(am.astype(q.dtype, copy=False)))
    allowed = backend.for_array(q.data).attention_mask(Nq, Nk, kpm, causal, batch=B, xp=xp)
    if am is not None and am.dtype == bool:
        allowed = allowed & am
    if not allowed.all():
        s = masked_fill(s, ~allowed, -np.inf)
    w = softmax(s, axis=-1)  # (B, H, Nq, Nk)
    if dropout_p and training:
        w = _dropout(w, dropout_p, training=True)
    o = matmul(w, v)  # (B, H, Nq, D)
    return (o, w) if return_weights else o
