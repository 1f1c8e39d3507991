"""Fused attention in fp32 on the GPU (``attention.cu``, FlashAttention-2 style).

Same signatures and semantics as ``kernels/reference.py``: ``q (B, H, Nq, D)``,
``k, v (B, H, Nk, D)``, ``key_padding_mask (B, Nk)`` (True = attend), ``causal``
with the queries as the last Nq positions, ``scale`` (default 1/sqrt(D));
forward returns ``o (B, H, Nq, D)`` and ``lse (B, H, Nq)``. Head dimensions up
to 128; the kernels are built for D = 64 and 128 and smaller D is zero-padded.
"""

from __future__ import annotations

import math

import numpy as np
from minivl.kernels.cuda import loader

MAX_HEAD_DIM = 128
_THREADS = 256
_GRID_Y_MAX = 65535
FORWARD_TILES = loader.ATTENTION_TILES["forward"]  # padded head dim kD -> (query tile, key tile)
BACKWARD_TILES = loader.ATTENTION_TILES["backward"]


def head_dim_bucket(d: int) -> int:
    """The compiled head dimension kD that serves a run-time head dimension d."""
    return 64 if d <= 64 else 128


def check_inputs(q, k, v, key_padding_mask, dtypes=(np.float32,)):
    """Validated contiguous (q, k, v, mask-or-None) and the sizes (B, H, Nq, Nk, D)."""
    q, k, v = (loader.device_array(t, name, dtypes) for t, name in ((q, "q"), (k, "k"), (v, "v")))
    loader.same_dtype(q=q, k=k, v=v)
    # shapes were validated at the door (F.scaled_dot_product_attention); here they are a contract
    assert q.ndim == k.ndim == v.ndim == 4, f"q, k, v must be (B, H, N, D), got {q.shape}, {k.shape}, {v.shape}"
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    assert k.shape == (B, H, Nk, D) and v.shape == k.shape, (
        f"k {k.shape} and v {v.shape} must both be (B, H, Nk, D) = ({B}, {H}, Nk, {D})")
    if not 1 <= D <= MAX_HEAD_DIM:
        raise ValueError(f"head dimension {D} must be between 1 and the kernels' maximum {MAX_HEAD_DIM}")
    if B * H > _GRID_Y_MAX:
        raise ValueError(f"B * H = {B * H} exceeds the grid limit {_GRID_Y_MAX}")
    if key_padding_mask is not None:
        xp = loader.xp()
        if not isinstance(key_padding_mask, xp.ndarray):
            raise TypeError(f"key_padding_mask must be a {xp.__name__} array, got {type(key_padding_mask).__name__}")
        assert key_padding_mask.shape == (B, Nk), (
            f"key_padding_mask must be (B, Nk) = ({B}, {Nk}), got {key_padding_mask.shape}")
        key_padding_mask = xp.ascontiguousarray(key_padding_mask.astype(np.bool_, copy=False))
    return q, k, v, key_padding_mask, (B, H, Nq, Nk, D)


def mask_args(key_padding_mask):
    """(pointer-or-dummy, has_mask) kernel arguments for an optional mask."""
    if key_padding_mask is None:
        return loader.xp().zeros(1, dtype=np.bool_), np.int32(0)  # never read
    return key_padding_mask, np.int32(1)


def forward_setup(q, k, v, key_padding_mask, scale):
    """What every forward rung starts with: checked inputs, sizes, the scale
    (1/sqrt(D) by default), and empty float32 outputs o (B, H, Nq, D), lse (B, H, Nq)."""
    q, k, v, mask, (B, H, Nq, Nk, D) = check_inputs(q, k, v, key_padding_mask)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    xp = loader.xp()
    o = xp.empty((B, H, Nq, D), dtype=np.float32)
    lse = xp.empty((B, H, Nq), dtype=np.float32)
    return q, k, v, mask, (B, H, Nq, Nk, D), scale, o, lse


def attention_forward(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """(o, lse): softmax(q k^T * scale + mask) v and the log-sum-exp of each score row."""
    q, k, v, mask, (B, H, Nq, Nk, D), scale, o, lse = forward_setup(q, k, v, key_padding_mask, scale)
    if lse.size == 0:
        return o, lse
    kd = head_dim_bucket(D)
    tile_q, tile_k = FORWARD_TILES[kd]
    kernel = loader.get_function("attention.cu", f"attention_forward<{kd}, {tile_q}, {tile_k}>")
    mask_ptr, has_mask = mask_args(mask)
    kernel(
        (loader.ceil_div(Nq, tile_q), B * H, 1), (_THREADS, 1, 1),
        (q, k, v, mask_ptr, has_mask, o, lse, np.int32(H), np.int32(Nq), np.int32(Nk), np.int32(D),
         np.int32(bool(causal)), np.float32(scale)),
    )
    return o, lse


def attention_backward(q, k, v, o, lse, do, key_padding_mask=None, causal=False, scale=None):
    """(dq, dk, dv), rebuilding the probabilities from the saved ``lse``."""
    q, k, v, mask, (B, H, Nq, Nk, D) = check_inputs(q, k, v, key_padding_mask)
    o, do = loader.device_array(o, "o", (np.float32,)), loader.device_array(do, "do", (np.float32,))
    lse = loader.device_array(lse, "lse", (np.float32,))
    if o.shape != q.shape or do.shape != q.shape or lse.shape != (B, H, Nq):
        raise ValueError(
            f"o {o.shape} and do {do.shape} must match q {q.shape}, lse {lse.shape} must be ({B}, {H}, {Nq})"
        )
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    xp = loader.xp()
    dq, dk, dv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
    if B * H == 0:
        return dq, dk, dv
    kd = head_dim_bucket(D)
    tile_q, tile_k = BACKWARD_TILES[kd]
    mask_ptr, has_mask = mask_args(mask)
    common = (np.int32(H), np.int32(Nq), np.int32(Nk), np.int32(D), np.int32(bool(causal)), np.float32(scale))

    # delta = rowsum(dO * O), the softmax-backward term shared by all key tiles
    delta = xp.empty((B, H, Nq), dtype=np.float32)
    rows = B * H * Nq
    if rows:
        loader.get_function("attention.cu", "attention_backward_delta")(
            (loader.ceil_div(rows, _THREADS // 32), 1, 1), (_THREADS, 1, 1),
            (o, do, delta, np.int64(rows), np.int32(D)),
        )
    tiles = f"{kd}, {tile_q}, {tile_k}"
    if Nk:
        loader.get_function("attention.cu", f"attention_backward_dkdv<{tiles}>")(
            (loader.ceil_div(Nk, tile_k), B * H, 1), (_THREADS, 1, 1),
            (q, k, v, do, lse, delta, mask_ptr, has_mask, dk, dv, *common),
        )
    if Nq:
        loader.get_function("attention.cu", f"attention_backward_dq<{tiles}>")(
            (loader.ceil_div(Nq, tile_q), B * H, 1), (_THREADS, 1, 1),
            (q, k, v, do, lse, delta, mask_ptr, has_mask, dq, *common),
        )
    return dq, dk, dv
