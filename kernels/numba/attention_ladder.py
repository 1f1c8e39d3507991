"""Attention on the CPU as a numbered ladder, llm.c ``attention_forward.cu`` style:
each rung changes one thing, and a reader diffs rung k against rung k + 1.

    v1  naive: the whole (Nq, Nk) score matrix S in memory, then softmax, then P V
        python benchmarks/bench_attention.py --device cpu --version 1
    v2  online softmax: one pass over the keys per query row, a running max and
        sum rescale the output accumulator; no N x N memory (Milakov and
        Gimelshein 2018), but one key at a time, so no matrix products
        python benchmarks/bench_attention.py --device cpu --version 2
    v3  tiled flash forward: v2 on (80 x 80) tiles of queries and keys, each tile
        product a register-tiled GEMM (``attention.attention_forward``)
        python benchmarks/bench_attention.py --device cpu --version 3
    v4  flash backward: P rebuilt tile by tile from the forward's lse, dQ as
        per-task partial sums added in a fixed order (``attention.attention_backward``)
        python benchmarks/bench_attention.py --device cpu --version 4

Rungs 1-3 are forward passes, rung 4 the backward pass; the backend's
``attention_forward`` / ``attention_backward`` are rungs 3 and 4, the
fastest. Every rung has the signature and semantics of its namesake in
``kernels/reference.py`` and is checked against it
(``tests/kernels/test_numba_attention.py``). The CUDA ladder is
``kernels/cuda/attention_ladder.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import attention

# --------------------------------------------------------------------------- v1


@njit(parallel=True, cache=True)
def _naive_kernel(q, k, v, key_mask, causal, scale, s, o, lse):
    """One task per head: S = scale Q K^T (masked), softmax of each row of S in
    place, O = P V. s (BH, Nq, Nk) is the score matrix, O(N^2) memory."""
    BH, Nq, D = q.shape
    Nk, Dv = k.shape[1], v.shape[2]
    H = BH // key_mask.shape[0]
    shift = Nk - Nq  # causal: query i sits at position i + shift
    for bh in prange(BH):
        for i in range(Nq):
            for j in range(Nk):
                if key_mask[bh // H, j] and (not causal or j <= i + shift):
                    dot = 0.0
                    for c in range(D):
                        dot += q[bh, i, c] * k[bh, j, c]
                    s[bh, i, j] = dot * scale
                else:
                    s[bh, i, j] = -np.inf
        for i in range(Nq):
            row = s[bh, i]
            m = row.max() if Nk else -np.inf
            if m == -np.inf:  # every key masked: o = 0, lse = -inf
                row[:] = 0.0
                lse[bh, i] = -np.inf
                continue
            total = 0.0
            for j in range(Nk):
                row[j] = math.exp(row[j] - m)
                total += row[j]
            for j in range(Nk):
                row[j] /= total
            lse[bh, i] = m + math.log(total)
        for i in range(Nq):
            for c in range(Dv):
                acc = 0.0
                for j in range(Nk):
                    acc += s[bh, i, j] * v[bh, j, c]
                o[bh, i, c] = acc


def attention_forward_naive(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """v1: (o, lse) through the full (B, H, Nq, Nk) score matrix."""
    q3, k3, v3, mask, scale, dtype = attention._prepare("attention_forward_naive", q, k, v, key_padding_mask,
                                                        scale)
    (B, H), (BH, Nq, _), Nk = np.shape(q)[:2], q3.shape, k3.shape[1]
    s = np.empty((BH, Nq, Nk), dtype)  # the N x N matrix the later rungs never make
    o = np.empty((BH, Nq, v3.shape[2]), dtype)
    lse = np.empty((BH, Nq), dtype)
    if BH and Nq:
        _naive_kernel(q3, k3, v3, mask, bool(causal), scale, s, o, lse)
    return o.reshape((B, H, Nq, v3.shape[2])), lse.reshape((B, H, Nq))


# --------------------------------------------------------------------------- v2


@njit(parallel=True, cache=True)
def _online_kernel(q, k, v, key_mask, causal, scale, o, lse):
    """One task per (head, query row), one pass over the keys: a score above the
    running max m rescales the sum l and the accumulator by exp(m_old - m_new)."""
    BH, Nq, D = q.shape
    Nk, Dv = k.shape[1], v.shape[2]
    H = BH // key_mask.shape[0]
    shift = Nk - Nq
    for task in prange(BH * Nq):
        bh, i = task // Nq, task % Nq
        acc = np.zeros(Dv, o.dtype)
        m, total = -np.inf, 0.0
        for j in range(Nk):
            if not key_mask[bh // H, j] or (causal and j > i + shift):
                continue
            x = 0.0
            for c in range(D):
                x += q[bh, i, c] * k[bh, j, c]
            x *= scale
            if x > m:  # a new maximum: what was summed so far shrinks by exp(m - x)
                alpha = math.exp(m - x)  # m = -inf at the first key: alpha = 0
                total = total * alpha + 1.0
                for c in range(Dv):
                    acc[c] = acc[c] * alpha + v[bh, j, c]
                m = x
            else:
                p = math.exp(x - m)
                total += p
                for c in range(Dv):
                    acc[c] += p * v[bh, j, c]
        for c in range(Dv):
            o[bh, i, c] = acc[c] / total if total > 0 else 0.0
        lse[bh, i] = m + math.log(total) if total > 0 else -np.inf


def attention_forward_online(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """v2: (o, lse) in one pass over the keys per query row, O(N) memory."""
    q3, k3, v3, mask, scale, dtype = attention._prepare("attention_forward_online", q, k, v, key_padding_mask,
                                                        scale)
    (B, H), (BH, Nq, _) = np.shape(q)[:2], q3.shape
    o = np.empty((BH, Nq, v3.shape[2]), dtype)
    lse = np.empty((BH, Nq), dtype)
    if BH and Nq:
        _online_kernel(q3, k3, v3, mask, bool(causal), scale, o, lse)
    return o.reshape((B, H, Nq, v3.shape[2])), lse.reshape((B, H, Nq))


# --------------------------------------------------------------------------- the ladder


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: which pass it computes, the function, what it changes."""

    op: str  # "attention_forward" or "attention_backward" (the reference function it matches)
    fn: object
    change: str


LADDER: dict[int, Rung] = {
    1: Rung("attention_forward", attention_forward_naive, "naive: the N x N score matrix in memory"),
    2: Rung("attention_forward", attention_forward_online, "online softmax: one pass per row, O(N) memory"),
    3: Rung("attention_forward", attention.attention_forward, "tiled flash forward: tile products as GEMMs"),
    4: Rung("attention_backward", attention.attention_backward, "flash backward: P rebuilt from lse, tiled"),
}
