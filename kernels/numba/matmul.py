"""Matrix multiplication on the CPU with Numba: from the textbook loop to a blocked GEMM.

Same signature and semantics as ``reference.matmul`` (NumPy's ``matmul``:
batched, broadcasting over the leading axes, 1-D operands promoted).
Two numbered versions, llm.c style, so the difference is the lesson:

* ``matmul_v1`` -- i-k-j loop order, parallel over rows of C. The inner loop is
  an axpy over a contiguous row of B, so LLVM vectorises it, but every
  multiply-add loads and stores C: bound by loads/stores, about a quarter of
  OpenBLAS (PERF.md).
* ``matmul`` (v2) -- the structure of Goto & van de Geijn, "Anatomy of
  high-performance matrix multiplication" (2008), as in BLIS: C is cut into
  blocks of MC x NC computed by independent parallel tasks; K is cut into
  panels of KC, and each KC x NC panel of B is copied ("packed") into a
  contiguous buffer that stays in L2 unless it already is one (A needs no
  packing here: the register tile reads it only as scalars); inside a block, a
  *register tile* (in ``gemm_tile``) gives four rows of C a rank-4
  update in one sweep: 16 scalars of A sit in registers, every vector of B
  loaded feeds 4 rows and every vector of C loaded receives 4 multiply-adds.
  That trades the load/store bound for the FMA bound.

``gemm_tile`` (the serial block product) is reused by ``attention.py``: one
FlashAttention tile is two small matrix products.

Measured (benchmarks/bench_kernels.py, float32, one thread of a 2-core
AVX-512 machine, CPU time): v1 about a third of OpenBLAS, v2 70-100 %
(1024^3: 70-85 GFLOP/s against OpenBLAS's ~97).

On the shapes of the lecture models' training steps (a few thousand rows,
K and N of 64-400) v2 is only about half of OpenBLAS at one thread (measured
with benchmarks/bench_train.py's per-op breakdown, issue 16): the packing and
the 4-row tiles do not amortise over a K of 64. So the numba *backend* serves
``matmul`` with ``matmul_backend``: BLAS (NumPy's ``matmul``, as the
reference) by default, or this file's ``matmul`` with
``MINIVL_NUMBA_GEMM=own`` -- the GEMM ladder stays a lesson, not the bottleneck.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

from .vmath import JIT_OPTIONS

# Which GEMM the numba backend uses: "blas" (default) or "own" (``matmul`` below).
GEMM = os.environ.get("MINIVL_NUMBA_GEMM", "blas")

# Block sizes (elements). A KC x NC panel of B is 256 KiB in float32: it fits
# the 1-2 MiB L2 of current x86 cores. Measured on a 2-core AVX-512 machine;
# 128-512 all land within ~20 % of each other.
MC, KC, NC = 256, 256, 256


# --------------------------------------------------------------------------- v1


@njit(parallel=True, **JIT_OPTIONS)
def _matmul_v1_kernel(a, b, out):
    """out (M, N) = a (M, K) @ b (K, N), i-k-j order, one row of C per task."""
    M, K = a.shape
    for i in prange(M):
        ci = out[i]  # (N,)
        ci[:] = 0
        for p in range(K):
            aip = a[i, p]
            bp = b[p]  # (N,)
            for j in range(ci.shape[0]):
                ci[j] += aip * bp[j]


def matmul_v1(a, b):
    """Version 1: the i-k-j loop (2-D float inputs only; kept for the benchmark)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    _matmul_v1_kernel(a.astype(out.dtype, copy=False), b.astype(out.dtype, copy=False), out)
    return out


# --------------------------------------------------------------------------- v2


@njit(**JIT_OPTIONS)
def gemm_tile(c, a, b):
    """c (m, n) += a (m, k) @ b (k, n), serially, for blocks that fit in cache.

    The register tile: for each 4 rows of C and 4 steps of k, the 16 entries
    of A are loaded once as scalars the compiler keeps in registers, then one
    sweep over j (vectorised) gives the 4 rows a rank-4 update: every vector of
    B loaded feeds 4 rows, every vector of C loaded gets 4 multiply-adds.

    Pass C-contiguous arrays: Numba vectorises only loops over arrays it knows
    to be contiguous. (Indexing the 2-D arrays directly, rather than through
    row views, leaves LLVM fewer pointers to check for overlap: 2.5x faster.)
    """
    m, n = c.shape
    k = a.shape[1]
    m4, k4 = m - m % 4, k - k % 4
    for i in range(0, m4, 4):
        for p in range(0, k4, 4):
            a00, a01, a02, a03 = a[i, p], a[i, p + 1], a[i, p + 2], a[i, p + 3]
            a10, a11, a12, a13 = a[i + 1, p], a[i + 1, p + 1], a[i + 1, p + 2], a[i + 1, p + 3]
            a20, a21, a22, a23 = a[i + 2, p], a[i + 2, p + 1], a[i + 2, p + 2], a[i + 2, p + 3]
            a30, a31, a32, a33 = a[i + 3, p], a[i + 3, p + 1], a[i + 3, p + 2], a[i + 3, p + 3]
            for j in range(n):
                x0, x1, x2, x3 = b[p, j], b[p + 1, j], b[p + 2, j], b[p + 3, j]
                c[i, j] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                c[i + 1, j] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                c[i + 2, j] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                c[i + 3, j] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3
        for p in range(k4, k):  # leftover depth: rank-1 updates
            a0, a1, a2, a3 = a[i, p], a[i + 1, p], a[i + 2, p], a[i + 3, p]
            for j in range(n):
                x = b[p, j]
                c[i, j] += a0 * x
                c[i + 1, j] += a1 * x
                c[i + 2, j] += a2 * x
                c[i + 3, j] += a3 * x
    for i in range(m4, m):  # leftover rows: one at a time
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                c[i, j] += aip * b[p, j]


@njit(cache=True)
def _copy(dst, src):
    """dst[...] = src for 2-D arrays (a plain loop compiles faster than a slice copy)."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = src[i, j]


@njit(parallel=True, **JIT_OPTIONS)
def _matmul_blocked(a, b, a_index, b_index, out, mc, nc):
    """out[t] = a[a_index[t]] @ b[b_index[t]] for every t; blocks of C in parallel.

    a (Ba, M, K) in any memory layout, b (Bb, K, N) and out (T, M, N)
    C-contiguous; the index arrays carry the broadcasting of the leading axes
    without copying.
    """
    T, M, N = out.shape
    K = a.shape[2]
    n_i, n_j = (M + mc - 1) // mc, (N + nc - 1) // nc
    for task in prange(T * n_i * n_j):
        t = task // (n_i * n_j)
        i0 = (task // n_j) % n_i * mc
        j0 = task % n_j * nc
        i1, j1 = min(M, i0 + mc), min(N, j0 + nc)
        A, B = a[a_index[t]], b[b_index[t]]  # (M, K), (K, N)
        mb, nb = i1 - i0, j1 - j0
        if nb == N:  # the block spans whole rows of C: accumulate straight into them
            c_block = out[t][i0:i1]  # (mb, N), C-contiguous
            c_block[:] = 0
        else:
            c_block = np.zeros((mb, nb), out.dtype)
        b_buf = np.empty(min(KC, K) * nb, out.dtype)
        for k0 in range(0, K, KC):
            kb = min(K, k0 + KC) - k0
            # gemm_tile streams B and C through its vectorised inner loop, so
            # those two must be C-contiguous: B is (made so by matmul), and a
            # panel of it that is only part of its rows or columns is packed
            # (copied) into a buffer that stays in L2. A is only ever read as
            # scalars that are broadcast into registers, so it is read in
            # place, in any layout: no copy even for x.T in a weight gradient.
            a_panel = A[i0:i1, k0 : k0 + kb]  # (mb, kb)
            if kb == K and nb == N:
                b_panel = B
            else:
                b_panel = b_buf[: kb * nb].reshape((kb, nb))
                _copy(b_panel, B[k0 : k0 + kb, j0:j1])
            gemm_tile(c_block, a_panel, b_panel)
        if nb != N:
            _copy(out[t, i0:i1, j0:j1], c_block)


def _block_sizes(T, M, N):
    """Rows and columns ``(mc, nc)`` of the blocks of C that the tasks compute.

    At most MC x NC, and cut finer until there are at least two tasks per
    thread, in a multiple of the thread count (so no thread is left with one
    more block than the others). Each extra row block re-packs B, each extra
    column block re-packs A, so the cut goes through the dimension whose
    operand is cheaper to pack again: rows when N <= M, else columns.
    """
    threads = numba.get_num_threads()
    n_row, n_col = -(-M // MC), -(-N // NC)
    while T * n_row * n_col < 2 * threads or (T * n_row * n_col) % threads:
        if (N <= M and n_row < -(-M // 4)) or n_col >= N:
            n_row += 1
        else:
            n_col += 1
        if n_row >= -(-M // 4) and n_col >= N:
            break  # blocks of 4 rows and one column: nothing left to cut
    mc = -(-M // n_row)
    return int(min(MC, -(-mc // 4) * 4)), int(min(NC, -(-N // n_col)))


_ONE_MATRIX = np.zeros(1, dtype=np.int64)  # the batch index of a plain 2-D product


def matmul(a, b):
    """Batched ``a @ b`` with NumPy's broadcasting rules (float32/float64 kernels).

    Other dtypes (integers, float16, complex) are served by ``np.matmul``.
    """
    a, b = np.asarray(a), np.asarray(b)
    assert a.ndim > 0 and b.ndim > 0, f"matmul: scalars are not allowed, got a.shape={a.shape}, b.shape={b.shape}"
    dtype = np.result_type(a, b)
    if dtype not in (np.float32, np.float64):
        return np.matmul(a, b)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a = a[None, :]  # (1, K)
    if vector_b:
        b = b[:, None]  # (K, 1)
    (M, K), (K2, N) = a.shape[-2:], b.shape[-2:]
    assert K == K2, f"matmul: inner dimensions differ, a.shape={a.shape}, b.shape={b.shape}"
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])  # F.matmul checked that they broadcast
    # A is read in place, in any layout (see _matmul_blocked). B is made
    # C-ordered once here, when it is not (a weight W.T in x @ W.T), rather
    # than packed again by every task that needs it. (reshape copies only when
    # the batch axes cannot be merged.)
    a3 = a.astype(dtype, copy=False).reshape((math.prod(a.shape[:-2]), M, K))
    b3 = np.ascontiguousarray(b, dtype).reshape((math.prod(b.shape[:-2]), K, N))
    if batch == ():  # two matrices (every Linear layer): skip the broadcasting machinery
        a_index = b_index = _ONE_MATRIX
    else:
        a_index = np.broadcast_to(np.arange(a3.shape[0]).reshape(a.shape[:-2]), batch).ravel()
        b_index = np.broadcast_to(np.arange(b3.shape[0]).reshape(b.shape[:-2]), batch).ravel()
    out = np.empty((a_index.shape[0], M, N), dtype)  # (T, M, N)
    if out.size:
        _matmul_blocked(a3, b3, a_index, b_index, out, *_block_sizes(out.shape[0], M, N))
    out = out.reshape(batch + (M, N))
    if vector_a:
        out = out[..., 0, :]
    if vector_b:
        out = out[..., 0]
    return out


def matmul_backend(a, b):
    """The numba backend's ``matmul``: OpenBLAS through NumPy (``reference.matmul``,
    which folds a stack of rows times one matrix into one 2-D GEMM) unless
    ``MINIVL_NUMBA_GEMM=own`` picks the blocked Numba GEMM above."""
    if GEMM == "own":
        return matmul(a, b)
    from minivl.kernels.reference import matmul as blas_matmul

    return blas_matmul(a, b)
