"""Fused attention forward on tensor cores (``attention_mma.cu``): fp16 or bf16.

``attention_forward_mma(q, k, v, key_padding_mask=None, causal=False, scale=None)``
takes float16 CuPy arrays (or, with ``bfloat16=True``, uint16 arrays holding
bfloat16 bit patterns, since CuPy has no bfloat16 dtype) and returns ``o`` in
the input's dtype and ``lse`` in float32, with the conventions of
``kernels/reference.py``. Needs compute capability 8.0+ (mma.sync m16n8k16),
a head dimension that is a multiple of 8 and at most 128.
"""

from __future__ import annotations

import math

import numpy as np
from minivl.kernels.cuda import loader
from minivl.kernels.cuda.attention import check_inputs, mask_args

_THREADS = 128
_QUERY_TILE = 64


def _check_device() -> None:
    capability = loader.compute_capability()
    if capability < 80:
        raise RuntimeError(
            f"attention_forward_mma needs compute capability 8.0 or newer (mma.sync), got {capability / 10:.1f}"
        )


def attention_forward_mma(q, k, v, key_padding_mask=None, causal=False, scale=None, bfloat16=False):
    """(o, lse) like ``attention_forward``, computed with fp16/bf16 tensor-core products."""
    storage = np.uint16 if bfloat16 else np.float16
    q, k, v, mask, (B, H, Nq, Nk, D) = check_inputs(q, k, v, key_padding_mask, dtypes=(storage,))
    if D % 8:
        raise ValueError(f"head dimension {D} must be a multiple of 8 for 16-byte loads")
    q, k, v = (t.copy() if loader.data_ptr(t) % 16 else t for t in (q, k, v))  # 16-byte loads need alignment
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    xp = loader.xp()
    o = xp.empty((B, H, Nq, D), dtype=storage)
    lse = xp.empty((B, H, Nq), dtype=np.float32)
    if lse.size == 0:
        return o, lse
    _check_device()
    kd = 64 if D <= 64 else 128
    name = f"attention_forward_mma<{'true' if bfloat16 else 'false'}, {kd}>"
    mask_ptr, has_mask = mask_args(mask)
    loader.get_function("attention_mma.cu", name)(
        (loader.ceil_div(Nq, _QUERY_TILE), B * H, 1), (_THREADS, 1, 1),
        (q, k, v, mask_ptr, has_mask, o, lse, np.int32(H), np.int32(Nq), np.int32(Nk), np.int32(D),
         np.int32(bool(causal)), np.float32(scale)),
    )
    return o, lse
