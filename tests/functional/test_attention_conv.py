"""Attention (composed path vs fused path vs a direct NumPy formula) and the
convolution / pooling ops (against direct loops)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivl as mv
from minivl import functional as F
from minivl.testing import gradcheck


def leaf(a):
    return mv.tensor(np.array(a, dtype=np.float64), requires_grad=True)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def direct_attention(q, k, v, allowed):
    s = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
    s = np.where(allowed, s, -np.inf)
    with np.errstate(invalid="ignore"):
        p = np.exp(s - s.max(-1, keepdims=True))
        p = np.nan_to_num(p / p.sum(-1, keepdims=True))
    return p @ v


@given(
    b=st.integers(1, 2), h=st.integers(1, 2), nq=st.integers(1, 5), extra=st.integers(0, 3),
    d=st.integers(1, 4), causal=st.booleans(), padded=st.booleans(), seed=st.integers(0, 99),
)
def test_fused_and_composed_attention_agree(b, h, nq, extra, d, causal, padded, seed):
    nk = nq + extra  # queries are the last nq positions (a key/value cache)
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((b, h, nq, d)), rng.standard_normal((b, h, nk, d)), rng.standard_normal((b, h, nk, d))
    kpm = rng.random((b, nk)) > 0.3 if padded else None
    allowed = np.ones((b, 1, nq, nk), bool)
    if causal:
        allowed &= np.tril(np.ones((nq, nk), bool), k=nk - nq)
    if kpm is not None:
        allowed &= kpm[:, None, None, :]
    ref = direct_attention(q, k, v, allowed)
    fused = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), key_padding_mask=kpm, causal=causal)
    composed, w = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), key_padding_mask=kpm, causal=causal,
                                                 return_weights=True)
    np.testing.assert_allclose(fused.data, ref, atol=1e-12)
    np.testing.assert_allclose(composed.data, ref, atol=1e-12)
    assert np.isfinite(w.data).all()
    args = dict(key_padding_mask=kpm, causal=causal)
    gradcheck(lambda a, c, e: F.scaled_dot_product_attention(a, c, e, **args), leaf(q), leaf(k), leaf(v))
    # both paths give the same gradients
    grads = []
    for weights in (False, True):
        ts = [leaf(q), leaf(k), leaf(v)]
        out = F.scaled_dot_product_attention(*ts, return_weights=weights, **args)
        out = out[0] if weights else out
        (out * mv.tensor(np.cos(np.arange(out.size)).reshape(out.shape))).sum().backward()
        grads.append([t.grad for t in ts])
    for g1, g2 in zip(*grads):
        np.testing.assert_allclose(g1, g2, atol=1e-10)


def test_additive_and_boolean_attn_mask():
    q, k, v = randn(1, 2, 3, 4), randn(1, 2, 5, 4, seed=1), randn(1, 2, 5, 4, seed=2)
    allowed = np.random.default_rng(3).random((3, 5)) > 0.4
    allowed[:, 0] = True
    additive = np.where(allowed, 0.0, -np.inf)
    ref = direct_attention(q, k, v, allowed)
    for m in (additive, allowed):
        out = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), attn_mask=m)
        np.testing.assert_allclose(out.data, ref, atol=1e-12)
    bias = randn(3, 5, seed=4)  # a relative-position-style bias is just added
    gradcheck(lambda a, c, e: F.scaled_dot_product_attention(a, c, e, attn_mask=bias), leaf(q), leaf(k), leaf(v))


def test_fully_masked_query_gives_zeros():
    q = k = v = randn(1, 1, 3, 2)
    kpm = np.zeros((1, 3), bool)
    for w in (False, True):
        out = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), key_padding_mask=kpm, return_weights=w)
        out = out[0] if w else out
        np.testing.assert_array_equal(out.data, 0.0)


def test_attention_shape_errors():
    q = leaf(randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, H, N, D\)"):
        F.scaled_dot_product_attention(leaf(randn(2, 3, 4)), q, q)
    with pytest.raises(ValueError, match="key_padding_mask"):
        F.scaled_dot_product_attention(q, q, q, key_padding_mask=np.ones((1, 4), bool))


def direct_conv2d(x, w, b, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    B, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = (H - kh) // stride + 1, (W - kw) // stride + 1
    out = np.zeros((B, O, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, w) + b
    return out


@given(stride=st.integers(1, 2), pad=st.integers(0, 1), k=st.integers(1, 3), size=st.integers(3, 6), seed=st.integers(0, 9))
def test_conv2d(stride, pad, k, size, seed):
    x, w, b = randn(2, 3, size, size + 1, seed=seed), randn(4, 3, k, k, seed=seed + 1), randn(4, seed=seed + 2)
    out = F.conv2d(leaf(x), leaf(w), leaf(b), stride=stride, padding=pad)
    np.testing.assert_allclose(out.data, direct_conv2d(x, w, b, stride, pad), atol=1e-12)
    gradcheck(lambda a, c, e: F.conv2d(a, c, e, stride=stride, padding=pad), leaf(x[:1, :2]), leaf(w[:2, :2]), leaf(b[:2]))


@pytest.mark.parametrize("stride,pad,k", [(1, 0, 3), (2, 1, 4), (2, 0, 2), (3, 1, 3)])
def test_conv_transpose2d_is_the_adjoint_of_conv2d(stride, pad, k):
    # <conv2d(x), y> == <x, conv_transpose2d(y)> for the same weight
    size = stride * 2 + k - 2 * pad  # an input that conv2d covers exactly (3 x 3 output)
    x, w = randn(1, 2, size, size), randn(3, 2, k, k, seed=1)
    y = randn(*F.conv2d(leaf(x), leaf(w), stride=stride, padding=pad).shape, seed=2)
    lhs = np.sum(F.conv2d(leaf(x), leaf(w), stride=stride, padding=pad).data * y)
    xt = F.conv_transpose2d(leaf(y), leaf(w), stride=stride, padding=pad)
    assert xt.shape == x.shape[:1] + (2,) + x.shape[2:]
    rhs = np.sum(x * xt.data)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)
    gradcheck(lambda a, c, e: F.conv_transpose2d(a, c, e, stride=stride, padding=pad),
              leaf(y), leaf(w), leaf(randn(2, seed=3)))


def test_pooling_and_upsampling():
    x = randn(2, 3, 4, 6)
    mp = F.max_pool2d(leaf(x), 2).data
    np.testing.assert_array_equal(mp, x.reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5)))
    ap = F.avg_pool2d(leaf(x), 2).data
    np.testing.assert_allclose(ap, x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)))
    gradcheck(lambda t: F.max_pool2d(t, 2), leaf(x))
    gradcheck(lambda t: F.avg_pool2d(t, 3), leaf(randn(1, 2, 7, 6)))
    up = F.upsample_nearest(leaf(x), 2).data
    np.testing.assert_array_equal(up[:, :, ::2, ::2], x)
    np.testing.assert_array_equal(up[:, :, 1::2, 1::2], x)
    gradcheck(lambda t: F.upsample_nearest(t, 3), leaf(randn(1, 2, 2, 3)))
    with pytest.raises(ValueError, match="kernel_size"):
        F.max_pool2d(leaf(x), 5)
