"""ViLBERT exercises: the co-attention layer (lecture S06) and the 5-d box location (S05).

Lu et al. (2019), "ViLBERT", section 3.1: in a co-attentional transformer
layer each stream computes queries, keys and values from its own tokens with
its own weights, then the streams exchange keys and values, so the language
tokens attend over image regions and the image regions over words. The
location of a region is ``[x1/W, y1/H, x2/W, y2/H, area fraction]`` (section
3.2). minivl has no ViLBERT model yet, so the reference co-attention is
written here, on top of ``kernels/reference.py::attention_forward``; the
location features are ``minivl/data/boxes.py::location_features``.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.exercises.draw import DTYPES, SEEDS, array, sizes
from minivl.kernels import reference as R

CO_ATTENTION_STUB = '''
def co_attention(text, image, text_proj, image_proj, num_heads):
    """One ViLBERT co-attention layer (no residual, no layer norm): the streams exchange keys and values.

    text: (B, Nt, d) word states; image: (B, Ni, d) region states.
    text_proj, image_proj: (4, d, d), each stream's own [W_q, W_k, W_v, W_o].
    Each stream projects its own tokens: Q_t = text @ W_q(text), K_t, V_t likewise;
    Q_i = image @ W_q(image), K_i, V_i likewise. Then, with num_heads heads of
    size hs = d // num_heads and the scale 1 / sqrt(hs),

        text_out  = MultiHead(Q_t, K_i, V_i) @ W_o(text)     words attend over regions   (B, Nt, d)
        image_out = MultiHead(Q_i, K_t, V_t) @ W_o(image)    regions attend over words   (B, Ni, d)

    where MultiHead splits the channels into heads (split_heads), applies
    softmax(Q K^T * scale) V per head, and merges them (merge_heads).
    Returns (text_out, image_out), in the dtype of text.
    """
    raise NotImplementedError("co_attention")
'''


def _heads(x, h):
    B, N, d = x.shape
    return x.reshape(B, N, h, d // h).transpose(0, 2, 1, 3)  # (B, h, N, hs)


def _merge(x):
    B, h, N, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, h * hs)


def _mha(q, k, v, h, scale=None):
    o = R.attention_forward(_heads(q, h), _heads(k, h), _heads(v, h), scale=scale)[0]
    return _merge(o)


def _co_attention(text, image, text_proj, image_proj, num_heads, exchange=True, own_weights=True, scale=None):
    qt, kt, vt = (text @ w for w in text_proj[:3])
    qi, ki, vi = (image @ w for w in image_proj[:3])
    if not own_weights:  # the other stream's tokens through this stream's key/value weights
        ki, vi, kt, vt = image @ text_proj[1], image @ text_proj[2], text @ image_proj[1], text @ image_proj[2]
    if not exchange:
        ki, vi, kt, vt = kt, vt, ki, vi
    text_out = _mha(qt, ki, vi, num_heads, scale) @ text_proj[3]
    image_out = _mha(qi, kt, vt, num_heads, scale) @ image_proj[3]
    return text_out, image_out


def _co_attention_loop(text, image, text_proj, image_proj, num_heads):
    def attend(x, y, wx, wy):
        d = x.shape[-1]
        hs = d // num_heads
        out = np.zeros_like(x)
        for b in range(x.shape[0]):
            q, k, v = x[b] @ wx[0], y[b] @ wy[1], y[b] @ wy[2]
            heads = []
            for h in range(num_heads):
                cols = slice(h * hs, (h + 1) * hs)
                s = q[:, cols] @ k[:, cols].T / math.sqrt(hs)
                p = np.exp(s - s.max(axis=1, keepdims=True))
                heads.append((p / p.sum(axis=1, keepdims=True)) @ v[:, cols])
            out[b] = np.concatenate(heads, axis=1) @ wx[3]
        return out

    return attend(text, image, text_proj, image_proj), attend(image, text, image_proj, text_proj)


@st.composite
def _co_inputs(draw):
    B, Nt, Ni, H, hs = draw(sizes(1, 2)), draw(sizes(1, 4)), draw(sizes(1, 4)), draw(sizes(1, 3)), draw(sizes(1, 3))
    d, dtype, seed = H * hs, draw(DTYPES), draw(SEEDS)
    big = draw(st.sampled_from([1.0, 4.0]))
    w = 1 / math.sqrt(d)
    return {"text": array((B, Nt, d), dtype, big, seed), "image": array((B, Ni, d), dtype, big, seed + 1),
            "text_proj": array((4, d, d), dtype, w, seed + 2), "image_proj": array((4, d, d), dtype, w, seed + 3),
            "num_heads": H}


CO_ATTENTION = Exercise(
    name="co_attention", slide="S06", part="ex1_vilbert", title="ViLBERT co-attention",
    stub=CO_ATTENTION_STUB, reference=_co_attention,
    solution="minivl/exercises/vilbert.py::_co_attention (on kernels/reference.py::attention_forward)",
    inputs=_co_inputs(),
    mistakes=[
        Mistake("streams not exchanged", "that is self-attention within each stream: in co-attention the words' "
                "queries meet the *image* keys and values, and the regions' queries the *text* keys and values.",
                lambda *a: _co_attention(*a, exchange=False)),
        Mistake("scale 1/sqrt(d)", "scale by 1 / sqrt(hs), the size of one head, not of the whole width d.",
                lambda t, i, tp, ip, h: _co_attention(t, i, tp, ip, h, scale=1 / math.sqrt(t.shape[-1]))),
        Mistake("other stream's tokens through this stream's weights", "each stream projects its *own* tokens "
                "with its own W_k, W_v; only the resulting keys and values cross over.",
                lambda *a: _co_attention(*a, own_weights=False)),
    ],
    hint="build the six projections first, then text_out from (Q_t, K_i, V_i) and image_out from (Q_i, K_t, V_t).",
)
CO_ATTENTION.alternative = _co_attention_loop

# --------------------------------------------------------------------------- location features

LOCATION_STUB = '''
def location_features(boxes, image_size):
    """ViLBERT's 5-d spatial vector of each region: boxes (N, 4) as (x1, y1, x2, y2) in pixels -> (N, 5).

    For a square image of side image_size = W = H:

        [x1 / W, y1 / H, x2 / W, y2 / H, (x2 - x1) * (y2 - y1) / (W * H)]

    (the corners as fractions of the image, then the fraction of the image the box covers).
    Returns the features in the dtype of boxes.
    """
    raise NotImplementedError("location_features")
'''


def _location(boxes, image_size, corners=True, area_fraction=True):
    x1, y1, x2, y2 = boxes.T
    w, h = x2 - x1, y2 - y1
    area = w * h / (image_size * image_size if area_fraction else 1)
    coords = [x1, y1, x2, y2] if corners else [x1, y1, w, h]
    return (np.stack([c / image_size for c in coords] + [area], axis=1)).astype(boxes.dtype)


def _location_loop(boxes, image_size):
    out = np.zeros((len(boxes), 5), boxes.dtype)
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        out[n] = [x1 / image_size, y1 / image_size, x2 / image_size, y2 / image_size,
                  (x2 - x1) / image_size * ((y2 - y1) / image_size)]
    return out


@st.composite
def _boxes(draw):
    size = draw(st.integers(1, 64))
    rng = np.random.default_rng(draw(SEEDS))
    corners = np.sort(rng.integers(0, size + 1, size=(draw(sizes(1, 6)), 2, 2)), axis=1)  # x1 <= x2, y1 <= y2
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], axis=1)
    return {"boxes": boxes.astype(draw(DTYPES)), "image_size": size}


LOCATION_FEATURES = Exercise(
    name="location_features", slide="S05", part="ex1_vilbert", title="5-d region location",
    stub=LOCATION_STUB, reference=_location,
    solution="minivl/data/boxes.py::location_features",
    inputs=_boxes(),
    scale=lambda boxes, image_size: 1.0,
    mistakes=[
        Mistake("width and height instead of the far corner", "ViLBERT uses both corners, (x1, y1) and (x2, y2), "
                "not (x, y, w, h).", lambda b, s: _location(b, s, corners=False)),
        Mistake("area in pixels", "the fifth entry is the *fraction* of the image covered: divide the box area "
                "by W * H.", lambda b, s: _location(b, s, area_fraction=False)),
    ],
)
LOCATION_FEATURES.alternative = _location_loop

EXERCISES = [CO_ATTENTION, LOCATION_FEATURES]
