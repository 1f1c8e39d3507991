"""Attention on the GPU as a numbered ladder, llm.c ``attention_forward.cu`` style:
each rung changes one thing, and a reader diffs rung k against rung k + 1.

    v1  naive: S = scale Q K^T in device memory (Nq x Nk per head), a softmax
        kernel over its rows, then O = P V; three launches, O(N^2) memory
        (attention_ladder.cu)   python benchmarks/bench_attention.py --device gpu --version 1
    v2  online softmax: one thread per query row, one pass over the keys with a
        running max and sum; no N x N memory, but no reuse of K and V between
        threads (attention_ladder.cu)   python benchmarks/bench_attention.py --device gpu --version 2
    v3  tiled flash forward: a block per query tile stages key tiles in shared
        memory, 16 lanes per row reduce with shuffles (attention.cu)
        python benchmarks/bench_attention.py --device gpu --version 3
    v4  flash backward: P rebuilt from lse, one kernel for dK dV over key tiles
        and one for dQ over query tiles, no atomics (attention.cu)
        python benchmarks/bench_attention.py --device gpu --version 4
    v5  tensor cores: v3 with fp16/bf16 Q K^T and P V on mma.sync, softmax in
        fp32 registers (attention_mma.cu)
        python benchmarks/bench_attention.py --device gpu --version 5

Rungs 1-3 and 5 are forward passes, rung 4 the backward pass. The backend's
``attention_forward`` / ``attention_backward`` are rungs 3 and 4 (the fastest
in fp32); rung 5 takes 16-bit inputs. Each has the signature and semantics of
``kernels/reference.py`` and is checked against it on the GPU and on the CPU
emulator (``tests/kernels/test_cuda_kernels.py``); the Numba ladder is
``kernels/numba/attention_ladder.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from minivl.kernels.cuda import attention, attention_mma, loader

MAX_HEAD_DIM = 128  # LADDER_MAX_D in attention_ladder.cu
_ROWS_PER_BLOCK = 128  # rung 2: threads (query rows) per block
_SOFTMAX_THREADS = 256  # rung 1b: threads (score rows) per block


def attention_forward_naive(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """v1: (o, lse) through the whole (B, H, Nq, Nk) score matrix in device memory."""
    q, k, v, mask, (B, H, Nq, Nk, D), scale, o, lse = attention.forward_setup(q, k, v, key_padding_mask, scale)
    if lse.size == 0:
        return o, lse
    if Nk == 0:  # no keys: every row fully masked
        o[...] = 0
        lse[...] = -np.inf
        return o, lse
    s = loader.xp().empty((B, H, Nq, Nk), dtype=np.float32)  # the N x N matrix the later rungs never make
    mask_ptr, has_mask = attention.mask_args(mask)
    sizes = (np.int32(H), np.int32(Nq), np.int32(Nk), np.int32(D))
    loader.get_function("attention_ladder.cu", "attention1_scores")(
        (loader.ceil_div(Nk, 32), loader.ceil_div(Nq, 8), B * H), (32, 8, 1),
        (q, k, mask_ptr, has_mask, s, *sizes, np.int32(bool(causal)), np.float32(scale)),
    )
    loader.get_function("attention_ladder.cu", "attention1_softmax")(
        (loader.ceil_div(lse.size, _SOFTMAX_THREADS), 1, 1), (_SOFTMAX_THREADS, 1, 1),
        (s, lse, np.int64(lse.size), np.int32(Nk)),
    )
    loader.get_function("attention_ladder.cu", "attention1_values")(
        (loader.ceil_div(D, 32), loader.ceil_div(Nq, 8), B * H), (32, 8, 1),
        (s, v, o, np.int32(Nq), np.int32(Nk), np.int32(D)),
    )
    return o, lse


def attention_forward_online(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """v2: (o, lse) in one pass over the keys per query row, O(N) memory."""
    q, k, v, mask, (B, H, Nq, Nk, D), scale, o, lse = attention.forward_setup(q, k, v, key_padding_mask, scale)
    if lse.size == 0:
        return o, lse
    mask_ptr, has_mask = attention.mask_args(mask)
    loader.get_function("attention_ladder.cu", "attention2_online")(
        (loader.ceil_div(lse.size, _ROWS_PER_BLOCK), 1, 1), (_ROWS_PER_BLOCK, 1, 1),
        (q, k, v, mask_ptr, has_mask, o, lse, np.int64(lse.size), np.int32(H), np.int32(Nq), np.int32(Nk),
         np.int32(D), np.int32(bool(causal)), np.float32(scale)),
    )
    return o, lse


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: which pass it computes, the function, what it changes."""

    op: str  # "attention_forward" or "attention_backward" (the reference function it matches)
    fn: object
    change: str
    storage: str = "float32"  # input dtype: rung 5 reads float16 (or bfloat16 bits)


LADDER: dict[int, Rung] = {
    1: Rung("attention_forward", attention_forward_naive, "naive: the N x N score matrix in device memory"),
    2: Rung("attention_forward", attention_forward_online, "online softmax: a thread per query row, one pass"),
    3: Rung("attention_forward", attention.attention_forward, "tiled flash forward: key tiles in shared memory"),
    4: Rung("attention_backward", attention.attention_backward, "flash backward: P rebuilt from lse"),
    5: Rung("attention_forward", attention_mma.attention_forward_mma, "tensor cores: fp16 mma.sync products",
            storage="float16"),
}
