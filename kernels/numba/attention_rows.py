"""Attention for short sequences, read and written in the projections' own (B, N, H, D) layout.

The same op as ``attention.py`` (and ``reference.attention_forward`` /
``attention_backward``: softmax(q k^T * scale + mask) v with its log-sum-exp,
and the gradients dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)),
dQ = dS K * scale, dK = dS^T Q * scale), for the lecture models' short
sequences (a few dozen tokens), where two costs of the tiled FlashAttention
kernel dominate:

* the copies around it: the heads arrive as ``(B, H, N, D)`` *views* of the
  projections' ``(B, N, H*D)`` output, and the tiled kernel wants each head
  contiguous, so q, k, v (and o, dO in the backward) are copied in, and the
  output is copied again when ``MultiHeadAttention`` merges the heads back;
* the tiles: with N = 10-65 one tile covers the whole row, and the packing
  and bookkeeping are pure overhead.

Here one task per (batch, head) keeps the whole row of scores (Nk floats) on
the stack and indexes q, k, v straight in their ``(B, N, H, D)`` layout: a
``(B, H, N, D)`` view of a C-ordered ``(B, N, H, D)`` array costs nothing to
pass, and the outputs are allocated ``(B, N, H, D)`` and returned as
``(B, H, N, D)`` views, so merging the heads afterwards is a free reshape.
Its memory is O(N) per task like the tiled kernel's. ``attention.py``
dispatches here when ``serves(Nq, Nk, causal)``: causal rows up to 88 keys (GPT,
the text towers of CLIP and LLaVA), unmasked rows below 15 keys or heads of at
most 12 queries (ViLBERT's regions); BERT's, ViT's and ViLBERT's text
self-attention take the tiled kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._parallel import Switch, parallel_kernel
from .vmath import JIT_OPTIONS, exp

# Which calls this kernel serves; the rest take the tiled kernel.
# ``python benchmarks/bench_attention_rows.py`` times both kernels forced
# (one thread, 4 heads of 16 dimensions, CPU time of forward + backward, the
# tiled kernel's copies included; ``benchmarks/results/attention_rows_cpu.json``):
# with a causal mask these rows win up to N = 81 keys and lose from N = 97 on;
# without one they win up to N = 13 keys, or at any length when a head has at
# most 12 queries (ViLBERT's region queries over the words): they compute
# every score of a row one axpy at a time, while the tiled kernel's
# register-tiled products pay from about 16 keys and 16 query rows on (a
# causal row skips half its keys, which helps the rows).
ROWS_MAX_NK_CAUSAL = 88
ROWS_MAX_NK = 14
ROWS_MAX_NQ = 12


KERNEL = Switch("rows", "tiled")  # forced by ``forced_kernel``


def serves(nq: int, nk: int, causal: bool) -> bool:
    """Whether this kernel (rather than the tiled one) serves ``nq`` queries over ``nk`` keys."""
    if KERNEL.value is not None:
        return KERNEL.value == "rows"
    if causal:
        return nk <= ROWS_MAX_NK_CAUSAL
    return nk <= ROWS_MAX_NK or nq <= ROWS_MAX_NQ


def forced_kernel(which: str):
    """Every attention call inside goes to ``which`` ("rows": this kernel, "tiled": the
    FlashAttention one), whatever its shape: for tests and benchmarks of either kernel."""
    return KERNEL.forced(which)


def heads_last(x, dtype):
    """``x (B, H, N, D)`` as a C-ordered ``(B, N, H, D)`` array: a free view when ``x``
    is a head-split view of a C-ordered (B, N, H*D) array, else one copy."""
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 1, 3), dtype)


@parallel_kernel(**JIT_OPTIONS)
def _forward(q, k, v, mask, causal, scale, o, lse):
    """q (B, Nq, H, D), k (B, Nk, H, D), v (B, Nk, H, Dv) -> o (B, Nq, H, Dv), lse (B, H, Nq)."""
    B, Nq, H, D = q.shape
    Nk, Dv = k.shape[1], v.shape[3]
    t = q.dtype.type
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        kt = np.empty((D, Nk), q.dtype)  # this head's K^T (scaled), so a score row is D axpys over j
        for j in range(Nk):
            for d in range(D):
                kt[d, j] = k[b, j, h, d] * scale
        s = np.empty(Nk, q.dtype)  # one row of scores
        acc = np.empty(Dv, q.dtype)
        for i in range(Nq):
            last = min(Nk, i + Nk - Nq + 1) if causal else Nk  # keys j < last are visible
            s[:last] = t(0)
            for d in range(D):
                qd = q[b, i, h, d]
                for j in range(last):
                    s[j] += qd * kt[d, j]
            m = t(-np.inf)
            for j in range(last):
                if not mask[b, j]:
                    s[j] = t(-np.inf)
                m = max(m, s[j])
            if m == t(-np.inf):  # every key masked: zero output, lse = -inf
                for d in range(Dv):
                    o[b, i, h, d] = t(0)
                lse[b, h, i] = t(-np.inf)
                continue
            total = t(0)
            for j in range(last):
                s[j] = exp(s[j] - m)  # exp(-inf) = 0 for masked keys
                total += s[j]
            acc[:] = t(0)
            for j in range(last):
                p = s[j]
                for d in range(Dv):
                    acc[d] += p * v[b, j, h, d]
            inv = t(1) / total
            for d in range(Dv):
                o[b, i, h, d] = acc[d] * inv
            lse[b, h, i] = m + t(math.log(total))


@parallel_kernel(**JIT_OPTIONS)
def _backward(q, k, v, o, lse, do, mask, causal, scale, dq, dk, dv):
    """Gradients in the (B, N, H, D) layout; each (b, h) task owns dk[b, :, h] and dv[b, :, h]."""
    B, Nq, H, D = q.shape
    Nk, Dv = k.shape[1], v.shape[3]
    t = q.dtype.type
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        kt = np.empty((D, Nk), q.dtype)  # K^T * scale and V^T of this head
        vt = np.empty((Dv, Nk), q.dtype)
        for j in range(Nk):
            for d in range(D):
                kt[d, j] = k[b, j, h, d] * scale
            for d in range(Dv):
                vt[d, j] = v[b, j, h, d]
        p = np.empty(Nk, q.dtype)  # a row of P, then of dS
        dp = np.empty(Nk, q.dtype)
        acc = np.empty(D, q.dtype)  # dQ row, before the scale
        for j in range(Nk):
            for d in range(D):
                dk[b, j, h, d] = t(0)
            for d in range(Dv):
                dv[b, j, h, d] = t(0)
        for i in range(Nq):
            acc[:] = t(0)
            li = lse[b, h, i]
            last = min(Nk, i + Nk - Nq + 1) if causal else Nk
            if li != t(-np.inf) and last > 0:
                delta = t(0)  # rowsum(dO * O) = rowsum(P * dP)
                for d in range(Dv):
                    delta += do[b, i, h, d] * o[b, i, h, d]
                p[:last] = t(0)
                dp[:last] = t(0)
                for d in range(D):
                    qd = q[b, i, h, d]
                    for j in range(last):
                        p[j] += qd * kt[d, j]
                for d in range(Dv):
                    dod = do[b, i, h, d]
                    for j in range(last):
                        dp[j] += dod * vt[d, j]
                for j in range(last):
                    pj = exp(p[j] - li) if mask[b, j] else t(0)  # P_ij rebuilt from the saved lse
                    p[j] = pj * (dp[j] - delta)  # dS_ij
                    dp[j] = pj
                for j in range(last):
                    pj, ds = dp[j], p[j]
                    for d in range(Dv):
                        dv[b, j, h, d] += pj * do[b, i, h, d]
                    for d in range(D):
                        acc[d] += ds * k[b, j, h, d]
                        dk[b, j, h, d] += ds * q[b, i, h, d]
            for d in range(D):
                dq[b, i, h, d] = acc[d] * scale
        for j in range(Nk):
            for d in range(D):
                dk[b, j, h, d] *= scale


def attention_forward(q, k, v, mask, scale, dtype, causal):
    """``o (B, H, Nq, Dv)`` (a view of a (B, Nq, H, Dv) array) and ``lse (B, H, Nq)``;
    ``mask (B, Nk)`` booleans, ``scale`` of ``dtype`` (checked by ``attention.py``)."""
    qh, kh, vh = heads_last(q, dtype), heads_last(k, dtype), heads_last(v, dtype)
    B, Nq, H, _ = qh.shape
    o = np.empty((B, Nq, H, vh.shape[3]), dtype)
    lse = np.empty((B, H, Nq), dtype)
    if o.size:
        _forward(qh, kh, vh, mask, bool(causal), scale, o, lse, work=qh.size * kh.shape[1])
    return o.transpose(0, 2, 1, 3), lse


def attention_backward(q, k, v, o, lse, do, mask, scale, dtype, causal):
    """``(dq, dk, dv)`` of ``attention_forward``, each a ``(B, H, N, D)`` view."""
    qh, kh, vh = heads_last(q, dtype), heads_last(k, dtype), heads_last(v, dtype)
    oh, doh = heads_last(o, dtype), heads_last(do, dtype)
    lse = np.ascontiguousarray(lse, dtype)
    dq, dk, dv = np.empty_like(qh), np.empty_like(kh), np.empty_like(vh)
    if qh.size and kh.size:
        _backward(qh, kh, vh, oh, lse, doh, mask, bool(causal), scale, dq, dk, dv,
                  work=qh.size * kh.shape[1])
    else:
        dq[...], dk[...], dv[...] = 0, 0, 0
    return dq.transpose(0, 2, 1, 3), dk.transpose(0, 2, 1, 3), dv.transpose(0, 2, 1, 3)
