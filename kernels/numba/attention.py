"""Fused scaled-dot-product attention (FlashAttention-style) as Numba CPU kernels:
rungs 3 (forward) and 4 (backward) of the ladder in ``attention_ladder.py``.

Same signatures and semantics as ``reference.attention_forward`` /
``attention_backward``: ``q (B, H, Nq, D)``, ``k (B, H, Nk, D)``,
``v (B, H, Nk, Dv)``, an optional ``key_padding_mask (B, Nk)`` (True = a real
key), ``causal`` (query i sees keys j <= i + Nk - Nq) and ``scale``.

The reference builds the whole (Nq, Nk) score matrix. Here it never exists
(Dao et al., "FlashAttention", 2022; "FlashAttention-2", 2023):

forward -- one parallel task per (batch*head, tile of BLOCK_Q query rows).
  For each tile of BLOCK_K keys: S = (scale Q) K^T for the tile, masked; an
  *online softmax* keeps each row's running max m and running sum l, and
  rescales the output accumulator by exp(m_old - m_new) whenever the max
  grows; acc += P V. The output is divided by l once at the end and
  lse = m + log(l) is saved for the backward pass. Under ``causal`` the key
  tiles past the tile's last visible key are skipped: half the work.

backward -- P is rebuilt from lse (P = exp(S - lse)), never stored.
  First D_i = rowsum(dO_i * O_i) (= rowsum(P * dP), the softmax Jacobian term).
  Then, as in FlashAttention-2, the outer loop runs over key tiles: a key
  tile's dK and dV rows are summed over the query tiles that see it, while
  dQ receives a share from every key tile. FlashAttention-2 adds those shares
  with atomics; here each parallel task (a chunk of _DQ_CHUNKS key tiles of
  one head) sums them into its own partial dQ, and the partials are added in
  a fixed order at the end: no races, and bit-for-bit repeatable results.

Extra memory is linear in N, never N x N: lse and D_i (N per head), K^T and
V^T stored once tile by tile (the size of k and v), the partial dQs
(_DQ_CHUNKS times the size of q) and per-task tile buffers of
O(BLOCK_Q * BLOCK_K + BLOCK * D). Every tile product is
``matmul.gemm_tile``, the register-tiled kernel of the matmul.

Measured (benchmarks/bench_kernels.py, float32, B=1 H=4 d=64, one thread, CPU
time): at N = 1024-2048 the forward is 1.5-2.4x NumPy's composed attention
(2.8-5.2x causal), the backward 1.5-2.0x (2.8-3.4x causal); the forward is on
a par with torch's CPU scaled_dot_product_attention.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import attention_rows
from ._parallel import SERIAL_BELOW_LIGHT, parallel_kernel
from ._rows import float_dtype
from .matmul import gemm_tile
from .vmath import JIT_OPTIONS, exp, row_max

# Tiles of 80: the 65 tokens of a ViT on 32 x 32 images in 4 x 4 patches (and
# every shorter sequence) fit one tile, instead of a tile of 64 and one of 1;
# at N = 1024 80 measured as fast as 64.
BLOCK_Q = 80  # query rows per tile
BLOCK_K = 80  # keys per tile
# backward: key tiles of a head are split into this many chunks, each a
# parallel task with its own partial dQ (so memory grows by this factor of dQ)
_DQ_CHUNKS = 4


@njit(cache=True)
def _zigzag(t, n):
    """Tile order 0, n-1, 1, n-2, ...: under ``causal`` tile costs grow with the
    index, and Numba hands each thread a contiguous range of tasks; interleaving
    cheap and dear tiles gives every thread the same share of work."""
    return t // 2 if t % 2 == 0 else n - 1 - t // 2


@njit(cache=True)
def _visible_keys(qi, Nq, Nk, causal):
    """How many keys (a prefix) query row ``qi`` may see before the padding mask."""
    return min(Nk, qi + Nk - Nq + 1) if causal else Nk


@njit(**JIT_OPTIONS)
def _mask_scores(s, i0, j0, Nq, Nk, causal, key_ok):
    """Set the disallowed entries of the score tile s (rows i0.., keys j0..) to -inf.

    Most tiles have none (no padding in them, not on the causal diagonal):
    one scan of key_ok finds out, and saves the per-element pass (15 % of the
    forward time).
    """
    nr, nc = s.shape
    if j0 + nc <= _visible_keys(i0, Nq, Nk, causal):  # even the first row sees every key
        for j in range(nc):
            if not key_ok[j0 + j]:
                break
        else:
            return
    neg_inf = s.dtype.type(-np.inf)
    for i in range(nr):
        limit = _visible_keys(i0 + i, Nq, Nk, causal) - j0  # keys j < limit are visible
        row = s[i]
        for j in range(nc):
            if j >= limit or not key_ok[j0 + j]:
                row[j] = neg_inf


@parallel_kernel(serial_below=SERIAL_BELOW_LIGHT, **JIT_OPTIONS)
def _transposed_tiles(x, xt):
    """x (BH, N, d) -> xt (BH, N * d): each tile of BLOCK_K rows stored transposed,
    tile j0 as a C-contiguous (d, nc) block at offset j0 * d (see ``_tile``).

    S = Q K^T and dP = dO V^T need K^T and V^T tiles as the (k, n) operand of
    gemm_tile; made once per call here, not once per (query tile, key tile).
    """
    BH, N, d = x.shape
    n_tiles = (N + BLOCK_K - 1) // BLOCK_K
    for task in prange(BH * n_tiles):
        bh, j0 = task // n_tiles, task % n_tiles * BLOCK_K
        nc = min(BLOCK_K, N - j0)
        tile = xt[bh, j0 * d : (j0 + nc) * d].reshape((d, nc))
        for j in range(nc):
            for c in range(d):
                tile[c, j] = x[bh, j0 + j, c]


@njit(**JIT_OPTIONS)
def _tile(xt, j0, nc, d):
    """The (d, nc) transposed tile of keys j0.. from one head's row of ``_transposed_tiles``."""
    return xt[j0 * d : (j0 + nc) * d].reshape((d, nc))


@njit(**JIT_OPTIONS)
def _scaled_copy(buf, x, scale):
    """scale * x (n, d), written into buf[:n*d]."""
    n, d = x.shape
    out = buf[: n * d].reshape((n, d))
    for i in range(n):
        for c in range(d):
            out[i, c] = x[i, c] * scale
    return out


@njit(**JIT_OPTIONS)
def _scores(s_buf, qs, kt):
    """S = qs @ kt for one (query tile, key tile), in the buffer s_buf."""
    s = s_buf[: qs.shape[0] * kt.shape[1]].reshape((qs.shape[0], kt.shape[1]))
    for i in range(s.shape[0]):  # (loops, not s[:] = 0: slice ops compile slowly)
        for j in range(s.shape[1]):
            s[i, j] = 0
    gemm_tile(s, qs, kt)
    return s


@njit(**JIT_OPTIONS)
def _probabilities_from_lse(s, lse_rows):
    """P = exp(S - lse) in place; masked scores (-inf) and fully masked rows give 0."""
    for i in range(s.shape[0]):
        row, li = s[i], lse_rows[i]
        for j in range(row.shape[0]):
            row[j] = exp(row[j] - li) if li != -np.inf else 0


# --------------------------------------------------------------------------- forward
# Each parallel kernel is a thin prange over tiles calling a serial tile
# function: Numba's parfor passes are slow on big loop bodies, and the tile
# function is also the unit a reader wants to see.


@njit(**JIT_OPTIONS)
def _forward_tile(q, kt, v, key_ok, causal, scale, o, lse, i0):
    """Rows i0.. of one head: q (Nq, D), kt (Nk * D: K^T tiles), v (Nk, Dv),
    key_ok (Nk,) -> o (Nq, Dv) and lse (Nq,) for those rows."""
    Nq, D = q.shape
    Nk, Dv = v.shape
    nr = min(BLOCK_Q, Nq - i0)
    dtype = q.dtype
    neg_inf = dtype.type(-np.inf)
    qs = _scaled_copy(np.empty(nr * D, dtype), q[i0 : i0 + nr], scale)  # (nr, D)
    acc = np.zeros((nr, Dv), dtype)  # unnormalised output rows
    m = np.empty(nr, dtype)  # running row max
    for i in range(nr):
        m[i] = neg_inf
    l = np.zeros(nr, dtype)  # running row sum of exp(s - m)
    s_buf = np.empty(BLOCK_Q * BLOCK_K, dtype)
    k_end = _visible_keys(i0 + nr - 1, Nq, Nk, causal)  # the tile's last row sees most
    for j0 in range(0, k_end, BLOCK_K):
        nc = min(BLOCK_K, Nk - j0)  # a whole key tile: _mask_scores hides the causal rest
        s = _scores(s_buf, qs, _tile(kt, j0, nc, D))  # (nr, nc)
        _mask_scores(s, i0, j0, Nq, Nk, causal, key_ok)
        for i in range(nr):  # online softmax, row by row
            row = s[i]
            m_new = max(m[i], row_max(row))
            if m_new == neg_inf:  # nothing visible yet in this row
                for j in range(nc):
                    row[j] = 0
                continue
            alpha = exp(m[i] - m_new)  # rescales what was summed under the old max
            total = dtype.type(0)
            for j in range(nc):
                p = exp(row[j] - m_new)
                row[j] = p
                total += p
            l[i] = l[i] * alpha + total
            m[i] = m_new
            if alpha != 1:
                for c in range(Dv):
                    acc[i, c] *= alpha
        gemm_tile(acc, s, v[j0 : j0 + nc])  # acc += P V_tile, (nr, Dv)
    for i in range(nr):
        # a fully masked row has l = 0: its output is 0 and its lse -inf
        inv_l = dtype.type(1) / l[i] if l[i] > 0 else l[i]
        for c in range(Dv):
            o[i0 + i, c] = acc[i, c] * inv_l
        lse[i0 + i] = m[i] + math.log(l[i]) if l[i] > 0 else neg_inf


@parallel_kernel(cache=True)
def _forward_kernel(q, kt, v, key_mask, causal, scale, o, lse):
    """q (BH, Nq, D), kt (BH, Nk * D), v (BH, Nk, Dv), key_mask (B, Nk) ->
    o (BH, Nq, Dv), lse (BH, Nq); one task per (head, query tile)."""
    BH, Nq = q.shape[:2]
    H = BH // key_mask.shape[0]
    n_tiles = (Nq + BLOCK_Q - 1) // BLOCK_Q
    for task in prange(BH * n_tiles):
        bh = task // n_tiles
        i0 = _zigzag(task % n_tiles, n_tiles) * BLOCK_Q
        _forward_tile(q[bh], kt[bh], v[bh], key_mask[bh // H], causal, scale, o[bh], lse[bh], i0)


# --------------------------------------------------------------------------- backward


@parallel_kernel(serial_below=SERIAL_BELOW_LIGHT, **JIT_OPTIONS)
def _row_dot(do, o, delta):
    """delta (BH, Nq) = rowsum(do * o)."""
    BH, Nq, Dv = o.shape
    for bh in prange(BH):
        for i in range(Nq):
            acc = o.dtype.type(0)
            for c in range(Dv):
                acc += do[bh, i, c] * o[bh, i, c]
            delta[bh, i] = acc


@njit(**JIT_OPTIONS)
def _dp_minus_delta_times_p(ds, p, delta_rows):
    """dS = P * (dP - D_i) in place of dP: the softmax Jacobian applied row-wise."""
    for i in range(ds.shape[0]):
        di = delta_rows[i]
        for j in range(ds.shape[1]):
            ds[i, j] = p[i, j] * (ds[i, j] - di)


@njit(**JIT_OPTIONS)
def _backward_key_tile(q, k, kt, vt, do, lse, delta, key_ok, causal, scale, dk, dv, dq_part, j0):
    """Everything key tile j0 of one head contributes to the gradients: its rows of
    dK and dV in full (summed over the query tiles that see it), and its share of
    dQ, added into this task's own partial sum ``dq_part`` (Nq, D)."""
    Nq, D = q.shape
    Nk, Dv = dv.shape
    nc = min(BLOCK_K, Nk - j0)
    dtype = q.dtype
    kt_tile, vt_tile = _tile(kt, j0, nc, D), _tile(vt, j0, nc, Dv)  # (D, nc), (Dv, nc)
    k_tile = k[j0 : j0 + nc]  # (nc, D)
    dk_acc = np.zeros((nc, D), dtype)
    dv_acc = np.zeros((nc, Dv), dtype)
    qs_buf = np.empty(BLOCK_Q * D, dtype)
    s_buf = np.empty(BLOCK_Q * BLOCK_K, dtype)
    dp_buf = np.empty(BLOCK_Q * BLOCK_K, dtype)
    # under causal, query rows before j0 - (Nk - Nq) cannot see this key tile
    first = max(0, j0 - (Nk - Nq)) if causal else 0
    for i0 in range(first // BLOCK_Q * BLOCK_Q, Nq, BLOCK_Q):
        nr = min(BLOCK_Q, Nq - i0)
        qs = _scaled_copy(qs_buf, q[i0 : i0 + nr], scale)  # (nr, D)
        do_tile = do[i0 : i0 + nr]  # (nr, Dv)
        p = _scores(s_buf, qs, kt_tile)  # S, (nr, nc)
        _mask_scores(p, i0, j0, Nq, Nk, causal, key_ok)
        _probabilities_from_lse(p, lse[i0 : i0 + nr])  # P
        gemm_tile(dv_acc, p.T, do_tile)  # dV += P^T dO
        ds = _scores(dp_buf, do_tile, vt_tile)  # dP = dO V^T, (nr, nc)
        _dp_minus_delta_times_p(ds, p, delta[i0 : i0 + nr])  # dS
        gemm_tile(dk_acc, ds.T, qs)  # dK += dS^T (scale Q)
        gemm_tile(dq_part[i0 : i0 + nr], ds, k_tile)  # dQ += dS K (times scale, later)
    for j in range(nc):
        for c in range(D):
            dk[j0 + j, c] = dk_acc[j, c]
        for c in range(Dv):
            dv[j0 + j, c] = dv_acc[j, c]


@parallel_kernel(cache=True)
def _backward_kernel(q, k, kt, vt, do, lse, delta, key_mask, causal, scale, dk, dv, dq_part):
    """One task per (head, chunk of key tiles); dq_part (BH, chunks, Nq, D) gets one
    partial dQ per task, so no two tasks ever write the same memory."""
    BH, n_chunks = dq_part.shape[:2]
    Nk = k.shape[1]
    H = BH // key_mask.shape[0]
    n_tiles = (Nk + BLOCK_K - 1) // BLOCK_K
    for task in prange(BH * n_chunks):
        bh, chunk = task // n_chunks, task % n_chunks
        # strided tiles: under causal, early key tiles (seen by more queries) cost
        # more, and striding gives every chunk a similar mix
        for t in range(chunk, n_tiles, n_chunks):
            _backward_key_tile(q[bh], k[bh], kt[bh], vt[bh], do[bh], lse[bh], delta[bh],
                               key_mask[bh // H], causal, scale, dk[bh], dv[bh],
                               dq_part[bh, chunk], t * BLOCK_K)


# --------------------------------------------------------------------------- wrappers


def _prepare(name, q, k, v, key_padding_mask, scale, flat=True):
    """Contiguous (BH, N, D) arrays (q, k, v untouched with ``flat=False``), the (B, Nk)
    mask and the scale (shapes asserted: ``F.scaled_dot_product_attention`` validates
    them for users)."""
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    assert (q.ndim == 4 and k.ndim == 4 and v.ndim == 4 and k.shape[:2] == q.shape[:2]
            and k.shape[3] == q.shape[3] and v.shape[:3] == k.shape[:3]), (
        f"{name}: expected q (B, H, Nq, D), k (B, H, Nk, D), v (B, H, Nk, Dv); got "
        f"q.shape={q.shape}, k.shape={k.shape}, v.shape={v.shape}"
    )
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    dtype = float_dtype(name, q, k, v)
    if key_padding_mask is None:
        mask = np.ones((B, Nk), dtype=bool)
    else:
        mask = np.asarray(key_padding_mask)
        assert mask.shape == (B, Nk), f"{name}: key_padding_mask must have shape (B, Nk) = {(B, Nk)}, got {mask.shape}"
        mask = np.ascontiguousarray(mask, dtype=bool)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    if not flat:
        return q, k, v, mask, dtype.type(scale), dtype
    flat = lambda x, n, d: np.ascontiguousarray(x, dtype).reshape((B * H, n, d))
    return (flat(q, Nq, D), flat(k, Nk, D), flat(v, Nk, v.shape[3]), mask,
            dtype.type(scale), dtype)


def attention_forward(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """softmax(q k^T * scale + mask) v and the per-row log-sum-exp, in O(N) memory."""
    if attention_rows.serves(np.shape(q)[2], np.shape(k)[2], causal):  # short rows: no copies, no tiles
        return attention_rows.attention_forward(
            *_prepare("attention_forward", q, k, v, key_padding_mask, scale, flat=False), causal=causal)
    q3, k3, v3, mask, scale, dtype = _prepare("attention_forward", q, k, v, key_padding_mask, scale)
    BH, Nq, _ = q3.shape
    B, H = np.shape(q)[:2]
    o = np.empty((BH, Nq, v3.shape[2]), dtype)
    lse = np.empty((BH, Nq), dtype)
    if BH and Nq:
        kt = np.empty((BH, k3.shape[1] * k3.shape[2]), dtype)  # K^T tiles, (BH, Nk * D)
        _transposed_tiles(k3, kt)
        _forward_kernel(q3, kt, v3, mask, bool(causal), scale, o, lse, work=q3.size * k3.shape[1])
    return o.reshape((B, H, Nq, v3.shape[2])), lse.reshape((B, H, Nq))


def attention_backward(q, k, v, o, lse, do, key_padding_mask=None, causal=False, scale=None):
    """(dq, dk, dv) of ``attention_forward``, rebuilding P from the saved lse."""
    if attention_rows.serves(np.shape(q)[2], np.shape(k)[2], causal):
        q, k, v, mask, scale, dtype = _prepare("attention_backward", q, k, v, key_padding_mask, scale, flat=False)
        B, H, Nq, _ = q.shape
        assert np.shape(o) == (B, H, Nq, v.shape[3]) and np.shape(do) == np.shape(o) and np.shape(lse) == (B, H, Nq), (
            f"attention_backward: expected o and do of shape {(B, H, Nq, v.shape[3])} and lse of shape "
            f"{(B, H, Nq)}; got o.shape={np.shape(o)}, do.shape={np.shape(do)}, lse.shape={np.shape(lse)}"
        )
        return attention_rows.attention_backward(q, k, v, o, lse, do, mask, scale, dtype, causal)
    q3, k3, v3, mask, scale, dtype = _prepare("attention_backward", q, k, v, key_padding_mask, scale)
    BH, Nq, D = q3.shape
    Nk, Dv = k3.shape[1], v3.shape[2]
    B, H = np.shape(q)[:2]
    o, do, lse = np.asarray(o), np.asarray(do), np.asarray(lse)
    assert o.shape == (B, H, Nq, Dv) and do.shape == o.shape and lse.shape == (B, H, Nq), (
        f"attention_backward: expected o and do of shape {(B, H, Nq, Dv)} and lse of shape "
        f"{(B, H, Nq)}; got o.shape={o.shape}, do.shape={do.shape}, lse.shape={lse.shape}"
    )
    o3 = np.ascontiguousarray(o, dtype).reshape((BH, Nq, Dv))
    do3 = np.ascontiguousarray(do, dtype).reshape((BH, Nq, Dv))
    lse2 = np.ascontiguousarray(lse, dtype).reshape((BH, Nq))
    dk = np.zeros((BH, Nk, D), dtype)
    dv = np.zeros((BH, Nk, Dv), dtype)
    n_chunks = max(1, min(_DQ_CHUNKS, -(-Nk // BLOCK_K)))
    dq_part = np.zeros((BH, n_chunks, Nq, D), dtype)  # partial sums of dQ / scale
    if BH and Nq and Nk:
        delta = np.empty((BH, Nq), dtype)  # D_i = rowsum(dO_i * O_i)
        _row_dot(do3, o3, delta)
        kt = np.empty((BH, Nk * D), dtype)  # K^T and V^T tiles
        vt = np.empty((BH, Nk * Dv), dtype)
        _transposed_tiles(k3, kt)
        _transposed_tiles(v3, vt)
        _backward_kernel(q3, k3, kt, vt, do3, lse2, delta, mask, bool(causal), scale, dk, dv, dq_part,
                         work=q3.size * Nk)
    dq = dq_part.sum(axis=1) * scale  # added in a fixed order: deterministic
    return (dq.reshape((B, H, Nq, D)), dk.reshape((B, H, Nk, D)), dv.reshape((B, H, Nk, Dv)))
