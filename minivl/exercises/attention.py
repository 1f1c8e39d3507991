"""Exercises on attention: the masked scaled dot-product, heads, the causal mask,
a key/value-cache step and the tiled online-softmax (flash) forward.

Attention is ``softmax(q k^T / sqrt(d) + mask) v`` (Vaswani et al. 2017), the
operation every model of the lecture is built from (S01, S06, S14, S29). The
reference is ``kernels/reference.py::attention_forward``; the flash version
follows Dao et al. (2022), "FlashAttention", Algorithm 1, as minivl's Numba
kernel does (``kernels/numba/attention.py``).

Why one file of ~370 lines: five exercises on one idea, each a block of the
same shape (stub and reference, inputs, typical mistakes, a differently
written correct solution).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.exercises.draw import DTYPES, SEEDS, array, sizes
from minivl.kernels import reference as R


@st.composite
def _qkv(draw, nq=None, max_n=5):
    B, H, D = draw(sizes(1, 2)), draw(sizes(1, 3)), draw(sizes(1, 6))
    Nq = nq if nq is not None else draw(sizes(1, max_n))
    Nk = draw(sizes(1, max_n))
    dtype, big = draw(DTYPES), draw(st.sampled_from([1.0, 3.0, 10.0]))
    return (array((B, H, Nq, D), dtype, big, draw(SEEDS)), array((B, H, Nk, D), dtype, big, draw(SEEDS)),
            array((B, H, Nk, D), dtype, 1.0, draw(SEEDS)))


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------- masked attention

ATTENTION_STUB = '''
def attention(q, k, v, mask):
    """Scaled dot-product attention with a key-padding mask.

    q: (B, H, Nq, D) queries;  k, v: (B, H, Nk, D) keys and values;
    mask: (B, Nk) booleans, True where a key is real (attend to it), False for padding.

        scores = q @ k^T / sqrt(D)                      (B, H, Nq, Nk)
        scores = -inf where the key is masked out
        out    = softmax(scores over the keys) @ v      (B, H, Nq, D)

    A query whose keys are all masked out gets an output of zeros (not NaN).
    Returns out in the dtype of q.
    """
    raise NotImplementedError("attention")
'''


@st.composite
def _attention_inputs(draw):
    q, k, v = draw(_qkv())
    rng = np.random.default_rng(draw(SEEDS))
    mask = rng.random((q.shape[0], k.shape[2])) < draw(st.sampled_from([1.0, 0.7, 0.3]))
    return {"q": q, "k": k, "v": v, "mask": mask}


def _attention(q, k, v, mask):
    return R.attention_forward(q, k, v, key_padding_mask=mask)[0]


def _att_scaled(q, k, v, mask, scale):
    return R.attention_forward(q, k, v, key_padding_mask=mask, scale=scale)[0]


def _att_mask_after_softmax(q, k, v, mask):
    p = _softmax(q @ np.swapaxes(k, -1, -2) / q.dtype.type(math.sqrt(q.shape[-1])))
    return (p * mask[:, None, None, :]) @ v


def _att_big_negative(q, k, v, mask):
    s = q @ np.swapaxes(k, -1, -2) / q.dtype.type(math.sqrt(q.shape[-1]))
    return _softmax(np.where(mask[:, None, None, :], s, q.dtype.type(-1e9))) @ v


def _attention_loop(q, k, v, mask):
    B, H, Nq, D = q.shape
    out = np.zeros_like(q)
    for b in range(B):
        keys = np.flatnonzero(mask[b])
        if keys.size == 0:
            continue
        for h in range(H):
            for i in range(Nq):
                s = np.array([q[b, h, i] @ k[b, h, j] for j in keys]) / math.sqrt(D)
                w = np.exp(s - s.max())
                out[b, h, i] = (w / w.sum()) @ v[b, h, keys]
    return out


ATTENTION = Exercise(
    name="attention", slide="S01", part="ex0_transformers", title="masked scaled dot-product attention",
    stub=ATTENTION_STUB, reference=_attention,
    solution="kernels/reference.py::attention_forward",
    inputs=_attention_inputs(),
    mistakes=[
        Mistake("scale forgotten", "divide the scores by sqrt(D) before the softmax (the 'scaled' in "
                "scaled dot-product): without it large D saturates the softmax.",
                lambda q, k, v, mask: _att_scaled(q, k, v, mask, 1.0)),
        Mistake("scale 1/D", "the scale is 1 / sqrt(D), not 1 / D.",
                lambda q, k, v, mask: _att_scaled(q, k, v, mask, 1.0 / q.shape[-1])),
        Mistake("mask applied after softmax", "mask the scores (set them to -inf) before the softmax; zeroing "
                "probabilities afterwards leaves rows that no longer sum to 1.", _att_mask_after_softmax),
        Mistake("-1e9 instead of -inf", "with a finite fill value a query whose keys are all masked averages "
                "every value; the stub asks for zeros there: use -inf and treat all -inf rows apart.",
                _att_big_negative),
    ],
    hint="scores = q @ k.swapaxes(-1, -2) / sqrt(D); mask[:, None, None, :] selects the allowed keys; "
         "subtract the row maximum before exp.",
)
ATTENTION.alternative = _attention_loop

# --------------------------------------------------------------------------- heads

SPLIT_HEADS_STUB = '''
def split_heads(x, num_heads):
    """Split the channels of x (B, N, C) into num_heads heads: returns (B, num_heads, N, C // num_heads).

    Head h holds channels h * hs ... (h + 1) * hs - 1 of every token, hs = C // num_heads.
    """
    raise NotImplementedError("split_heads")
'''


@st.composite
def _split_inputs(draw):
    H, hs = draw(sizes(1, 4)), draw(sizes(1, 4))
    x = array((draw(sizes(1, 3)), draw(sizes(1, 5)), H * hs), draw(DTYPES), 1.0, draw(SEEDS))
    return {"x": x, "num_heads": H}


def _split(x, num_heads):
    B, N, C = x.shape
    return x.reshape(B, N, num_heads, C // num_heads).transpose(0, 2, 1, 3)  # (B, H, N, hs)


SPLIT_HEADS = Exercise(
    name="split_heads", slide="S06", part="ex0_transformers", title="split the channels into heads",
    stub=SPLIT_HEADS_STUB, reference=_split,
    solution="minivl/nn/attention.py::MultiHeadAttention._heads",
    inputs=_split_inputs(),
    mistakes=[
        Mistake("reshape without transpose", "reshaping (B, N, C) straight to (B, H, N, hs) mixes tokens "
                "into heads; reshape to (B, N, H, hs) first, then move the head axis forward.",
                lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h)),
        Mistake("interleaved heads", "head h owns a contiguous block of channels: reshape to (B, N, H, hs), "
                "not (B, N, hs, H).",
                lambda x, h: x.reshape(x.shape[0], x.shape[1], x.shape[2] // h, h).transpose(0, 3, 1, 2)),
    ],
)
SPLIT_HEADS.alternative = lambda x, h: np.stack(np.split(x, h, axis=-1), axis=1)

MERGE_HEADS_STUB = '''
def merge_heads(x):
    """The inverse of split_heads: x (B, H, N, hs) -> (B, N, H * hs), head h in channels h*hs ... (h+1)*hs - 1."""
    raise NotImplementedError("merge_heads")
'''


def _merge(x):
    B, H, N, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, H * hs)


MERGE_HEADS = Exercise(
    name="merge_heads", slide="S06", part="ex0_transformers", title="merge the heads back",
    stub=MERGE_HEADS_STUB, reference=_merge,
    solution="minivl/nn/attention.py::MultiHeadAttention.forward (its last line)",
    inputs=_split_inputs().map(lambda d: {"x": _split(d["x"], d["num_heads"])}),
    mistakes=[
        Mistake("reshape without transpose", "bring the token axis before the head axis (transpose(0, 2, 1, 3)) "
                "before reshaping, or tokens get mixed.", lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
        Mistake("heads interleaved", "the channels of one head must stay together: transpose to (B, N, H, hs), "
                "not (B, N, hs, H).", lambda x: x.transpose(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)),
    ],
)
MERGE_HEADS.alternative = lambda x: np.concatenate([x[:, h] for h in range(x.shape[1])], axis=-1)

# --------------------------------------------------------------------------- causal mask

CAUSAL_MASK_STUB = '''
def causal_mask(nq, nk):
    """GPT's causal mask as booleans (nq, nk): True where query i may attend to key j.

    The nk keys are positions 0 ... nk-1 and the nq queries are the *last* nq
    positions (nq <= nk; with a key/value cache the queries are the newest tokens),
    so query i sits at position nk - nq + i and sees every key j <= nk - nq + i,
    itself included.
    """
    raise NotImplementedError("causal_mask")
'''


@st.composite
def _mask_inputs(draw):
    nk = draw(sizes(1, 8))
    return {"nq": draw(st.integers(1, nk)), "nk": nk}


CAUSAL_MASK = Exercise(
    name="causal_mask", slide="S01", part="ex0_transformers", title="causal mask with a cache offset",
    stub=CAUSAL_MASK_STUB, reference=lambda nq, nk: R.attention_mask(nq, nk, causal=True)[0, 0],
    solution="kernels/reference.py::attention_mask",
    inputs=_mask_inputs(),
    mistakes=[
        Mistake("off by one", "a token attends to itself: the diagonal is allowed (j <= i, not j < i).",
                lambda nq, nk: np.tril(np.ones((nq, nk), bool), k=nk - nq - 1)),
        Mistake("cache offset ignored", "when nq < nk the queries are the last nq positions: shift the "
                "diagonal by nk - nq (np.tril(..., k=nk - nq)).", lambda nq, nk: np.tril(np.ones((nq, nk), bool))),
        Mistake("upper triangle", "causal means looking back: allowed keys are j <= i (lower triangle).",
                lambda nq, nk: np.triu(np.ones((nq, nk), bool), k=nk - nq)),
    ],
)
CAUSAL_MASK.alternative = lambda nq, nk: np.array([[j <= nk - nq + i for j in range(nk)] for i in range(nq)])

# --------------------------------------------------------------------------- KV cache

KV_CACHE_STEP_STUB = '''
def kv_cache_step(q, k_new, v_new, k_cache, v_cache):
    """One step of GPT decoding with a key/value cache.

    q, k_new, v_new: (B, H, 1, D), the query, key and value of the newest token;
    k_cache, v_cache: (B, H, T, D), the keys and values of the T earlier tokens (T may be 0).

    Append the new key and value to the caches (at the end, along the token
    axis), then let the new token attend to all T + 1 keys (scale 1 / sqrt(D)).
    Returns (out (B, H, 1, D), k_cache (B, H, T+1, D), v_cache (B, H, T+1, D)).
    """
    raise NotImplementedError("kv_cache_step")
'''


@st.composite
def _kv_inputs(draw):
    B, H, D, T = draw(sizes(1, 2)), draw(sizes(1, 2)), draw(sizes(1, 5)), draw(st.integers(0, 5))
    dtype, seed = draw(DTYPES), draw(SEEDS)
    big = draw(st.sampled_from([1.0, 5.0]))
    return {"q": array((B, H, 1, D), dtype, big, seed), "k_new": array((B, H, 1, D), dtype, big, seed + 1),
            "v_new": array((B, H, 1, D), dtype, 1.0, seed + 2), "k_cache": array((B, H, T, D), dtype, big, seed + 3),
            "v_cache": array((B, H, T, D), dtype, 1.0, seed + 4)}


def _kv_step(q, k_new, v_new, k_cache, v_cache, prepend=False, causal=True):
    parts_k, parts_v = ([k_new, k_cache], [v_new, v_cache]) if prepend else ([k_cache, k_new], [v_cache, v_new])
    K, V = np.concatenate(parts_k, axis=2), np.concatenate(parts_v, axis=2)
    return R.attention_forward(q, K, V, causal=causal)[0], K, V


def _kv_before_append(q, k_new, v_new, k_cache, v_cache):
    _, K, V = _kv_step(q, k_new, v_new, k_cache, v_cache)
    if k_cache.shape[2] == 0:  # nothing to attend to yet: the empty weighted sum
        return np.zeros_like(q), K, V
    return R.attention_forward(q, k_cache, v_cache)[0], K, V


def _kv_mask_from_start(q, k_new, v_new, k_cache, v_cache):
    _, K, V = _kv_step(q, k_new, v_new, k_cache, v_cache)
    return _softmax(np.where(np.tril(np.ones((1, K.shape[2]), bool)), q @ np.swapaxes(K, -1, -2)
                             / q.dtype.type(math.sqrt(q.shape[-1])), -np.inf)) @ V, K, V


def _kv_loop(q, k_new, v_new, k_cache, v_cache):
    K, V = np.concatenate([k_cache, k_new], 2), np.concatenate([v_cache, v_new], 2)
    out = np.empty_like(q)
    for b, h in np.ndindex(q.shape[:2]):
        s = K[b, h] @ q[b, h, 0] / math.sqrt(q.shape[-1])
        w = np.exp(s - s.max())
        out[b, h, 0] = w @ V[b, h] / w.sum()
    return out, K, V


KV_CACHE_STEP = Exercise(
    name="kv_cache_step", slide="S01", part="ex0_transformers", title="a key/value-cache decoding step",
    stub=KV_CACHE_STEP_STUB, reference=_kv_step,
    solution="kernels/reference.py::attention_forward (causal=True: queries are the last positions)",
    inputs=_kv_inputs(),
    mistakes=[
        Mistake("attended before appending", "the newest token must see itself: append k_new, v_new to the "
                "caches first, then attend over all T + 1 keys.", _kv_before_append),
        Mistake("prepended", "the cache keeps positions in order: the new key goes at the end (index T).",
                lambda *a: _kv_step(*a, prepend=True)),
        Mistake("causal mask from position 0", "the single query is the *last* position, so it sees every key; "
                "a causal mask built for a query at position 0 sees only the first.", _kv_mask_from_start),
    ],
)
KV_CACHE_STEP.alternative = _kv_loop

# --------------------------------------------------------------------------- flash attention

FLASH_ATTENTION_STUB = '''
def flash_attention(q, k, v, block_size):
    """Attention softmax(q k^T / sqrt(D)) v computed over blocks of keys with an online softmax.

    q: (B, H, Nq, D); k, v: (B, H, Nk, D); no mask. Visit the keys in blocks of
    block_size (the last block may be shorter) and never build the full
    (Nq, Nk) score matrix. Keep, for every query, a running maximum m, a running
    sum l of exp(s - m) and an accumulator acc of exp(s - m) @ v; when a block
    raises the maximum to m', rescale l and acc by exp(m - m'). At the end
    out = acc / l and lse = m + log(l), the log-sum-exp of each row of scores.

    Returns (out (B, H, Nq, D), lse (B, H, Nq)), in the dtype of q.
    """
    raise NotImplementedError("flash_attention")
'''


@st.composite
def _flash_inputs(draw):
    q, k, v = draw(_qkv(max_n=9))
    return {"q": q, "k": k, "v": v, "block_size": draw(sizes(1, 4))}


def _flash(q, k, v, block_size, rescale_acc=True, rescale_l=True, normalise=True):
    """The online softmax over key blocks (FlashAttention, Algorithm 1), for the planted mistakes."""
    D, Nk = q.shape[-1], k.shape[2]
    m = np.full(q.shape[:-1] + (1,), -np.inf, q.dtype)
    l = np.zeros_like(m)
    acc = np.zeros_like(q)
    for start in range(0, Nk, block_size):
        s = q @ np.swapaxes(k[:, :, start:start + block_size], -1, -2) / q.dtype.type(math.sqrt(D))
        m_new = np.maximum(m, s.max(-1, keepdims=True))
        p = np.exp(s - m_new)
        c = np.exp(m - m_new)
        l = (l * c if rescale_l else l) + p.sum(-1, keepdims=True)
        acc = (acc * c if rescale_acc else acc) + p @ v[:, :, start:start + block_size]
        m = m_new
    return (acc / l if normalise else acc), (m + np.log(l))[..., 0]


def _flash_by_row(q, k, v, block_size):
    """One query at a time, one key at a time: the same recurrence, written as scalars."""
    out = np.empty_like(q)
    lse = np.empty(q.shape[:-1], q.dtype)
    for idx in np.ndindex(q.shape[:-1]):
        b, h, _ = idx
        m, l, acc = -np.inf, 0.0, np.zeros(q.shape[-1])
        for j in range(k.shape[2]):
            s = float(q[idx] @ k[b, h, j]) / math.sqrt(q.shape[-1])
            m_new = max(m, s)
            l = l * math.exp(m - m_new) + math.exp(s - m_new)
            acc = acc * math.exp(m - m_new) + math.exp(s - m_new) * v[b, h, j]
            m = m_new
        out[idx], lse[idx] = acc / l, m + math.log(l)
    return out, lse


FLASH_ATTENTION = Exercise(
    name="flash_attention", slide="S01", part="ex0_transformers", title="online-softmax attention in tiles",
    stub=FLASH_ATTENTION_STUB, reference=lambda q, k, v, block_size: R.attention_forward(q, k, v),
    solution="kernels/numba/attention.py (the tiled kernel); the math: kernels/reference.py::attention_forward",
    inputs=_flash_inputs(),
    mistakes=[
        Mistake("accumulator not rescaled", "when a block raises the running maximum, multiply acc by "
                "exp(m_old - m_new) as well as l.", lambda *a: _flash(*a, rescale_acc=False)),
        Mistake("sum not rescaled", "the running sum l was computed against the old maximum: multiply it by "
                "exp(m_old - m_new) before adding the new block.", lambda *a: _flash(*a, rescale_l=False)),
        Mistake("no final division", "acc holds sum exp(s - m) v; divide by l once, after the last block.",
                lambda *a: _flash(*a, normalise=False)),
    ],
)
FLASH_ATTENTION.alternative = _flash_by_row

EXERCISES = [ATTENTION, SPLIT_HEADS, MERGE_HEADS, CAUSAL_MASK, KV_CACHE_STEP, FLASH_ATTENTION]
