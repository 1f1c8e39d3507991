"""Softmax family, layer norm, losses, dropout and Gumbel-softmax: values
against NumPy math, gradients against finite differences, and the numerical
edge cases (logits of +-1e4, -inf masks)."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
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


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), seed=st.integers(0, 99), data=st.data())
def test_softmax_and_log_softmax(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(*shape, seed=seed) * 3
    np.testing.assert_allclose(F.softmax(leaf(x), axis).data, np_softmax(x, axis), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(leaf(x), axis).data, np.log(np_softmax(x, axis)), atol=1e-12)
    gradcheck(lambda t: F.softmax(t, axis), leaf(x))
    gradcheck(lambda t: F.log_softmax(t, axis), leaf(x))
    gradcheck(lambda t: F.logsumexp(t, axis), leaf(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_large_logits_and_masked_rows(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-np.inf, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf]], dtype=dtype)
    y = F.softmax(mv.tensor(x), axis=-1).data
    np.testing.assert_allclose(y, [[1, 0, 0], [0, 1, 0], [0, 0, 0]], atol=1e-6)
    assert y.dtype == dtype and np.isfinite(y).all()
    ly = F.log_softmax(mv.tensor(x), axis=-1).data
    assert ly[0, 0] == 0 and ly[1, 1] == 0 and not np.isnan(ly).any()
    # the gradient through a fully masked row is zero, not NaN
    t = mv.tensor(x, requires_grad=True)
    (F.softmax(t, axis=-1) * mv.tensor(np.arange(3, dtype=dtype))).sum().backward()
    assert np.isfinite(t.grad).all()


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), seed=st.integers(0, 99))
def test_layer_norm(shape, seed):
    x, w, b = randn(*shape, seed=seed), randn(shape[-1], seed=seed + 1), randn(shape[-1], seed=seed + 2)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(F.layer_norm(leaf(x), leaf(w), leaf(b)).data, ref, rtol=1e-9, atol=1e-10)
    gradcheck(F.layer_norm, leaf(x), leaf(w), leaf(b))


def test_layer_norm_bad_weight_shape():
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        F.layer_norm(leaf(randn(2, 4)), leaf(randn(3)), leaf(randn(4)))


def test_l2_normalize():
    x = randn(3, 5)
    y = F.l2_normalize(leaf(x), axis=-1).data
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1.0, rtol=1e-10)
    gradcheck(lambda t: F.l2_normalize(t, axis=0), leaf(x))


@given(n=st.integers(1, 6), c=st.integers(2, 5), seed=st.integers(0, 99), smoothing=st.sampled_from([0.0, 0.1]))
def test_cross_entropy(n, c, seed, smoothing):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)) * 2
    target = rng.integers(0, c, n)
    target[rng.random(n) < 0.3] = -100  # ignored positions
    keep = target != -100
    logp = np.log(np_softmax(logits))
    nll = -(1 - smoothing) * logp[np.arange(n), np.where(keep, target, 0)] - smoothing * logp.mean(-1)
    ref = nll[keep].mean() if keep.any() else 0.0
    out = F.cross_entropy(leaf(logits), target, label_smoothing=smoothing)
    np.testing.assert_allclose(out.data, ref, rtol=1e-10, atol=1e-12)
    gradcheck(lambda t: F.cross_entropy(t, target, label_smoothing=smoothing), leaf(logits))


def test_cross_entropy_class_axis_and_errors():
    logits = randn(2, 4, 3)  # (B, C, T) with classes on axis 1
    target = np.array([[0, 3, 1], [2, 2, 0]])
    a = F.cross_entropy(leaf(logits), target, axis=1).data
    b = F.cross_entropy(leaf(logits.transpose(0, 2, 1)), target).data
    np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError, match="target of shape"):
        F.cross_entropy(leaf(randn(2, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.cross_entropy(leaf(randn(2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(leaf(randn(2, 3)), np.array([0.0, 1.0]))


def test_bce_with_logits_soft_targets_and_extremes():
    x = np.array([-3.0, 0.0, 2.0, 1e4, -1e4])
    t = np.array([0.0, 0.3, 1.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-x[:3]))
    ref = np.concatenate([-(t[:3] * np.log(p) + (1 - t[:3]) * np.log(1 - p)), [0.0, 0.0]])
    out = F.binary_cross_entropy_with_logits(leaf(x), t, reduction="none").data
    np.testing.assert_allclose(out, ref, atol=1e-12)
    gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, t[:3]), leaf(x[:3]))


def test_kl_div():
    rng = np.random.default_rng(0)
    p = np_softmax(rng.standard_normal((4, 6)))
    p[0, :3] = 0
    p[0] /= p[0].sum()
    logits = rng.standard_normal((4, 6))
    logq = np.log(np_softmax(logits))
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.nansum(np.where(p > 0, p * (np.log(p) - logq), 0), axis=-1).mean()
    out = F.kl_div(F.log_softmax(leaf(logits)), p)
    np.testing.assert_allclose(out.data, ref, rtol=1e-10)
    gradcheck(lambda t: F.kl_div(F.log_softmax(t), p), leaf(logits))
    assert F.kl_div(mv.tensor(np.log(p[1:])), p[1:]).item() == pytest.approx(0, abs=1e-12)


def test_dropout_scales_and_masks():
    mv.manual_seed(3)
    x = mv.tensor(np.ones((200, 200), dtype=np.float32), requires_grad=True)
    y = F.dropout(x, p=0.25, training=True)
    kept = y.data != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, kept / 0.75, rtol=1e-6)
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.0)


def test_dropout_is_reproducible_by_seed():
    x = mv.tensor(np.ones(50, dtype=np.float32))
    mv.manual_seed(7)
    a = F.dropout(x, 0.5).data
    mv.manual_seed(7)
    b = F.dropout(x, 0.5).data
    np.testing.assert_array_equal(a, b)


def test_gumbel_softmax_soft_hard_and_temperature():
    logits = np.log(np.array([[0.7, 0.2, 0.1]]))
    gen = np.random.default_rng(0)
    soft = F.gumbel_softmax(leaf(logits), tau=1.0, generator=gen)
    np.testing.assert_allclose(soft.data.sum(-1), 1.0)
    t = leaf(logits)
    hard = F.gumbel_softmax(t, tau=0.5, hard=True, generator=np.random.default_rng(1))
    assert set(np.unique(hard.data)) <= {0.0, 1.0} and hard.data.sum() == 1
    (hard * mv.tensor(np.array([[1.0, 2.0, 3.0]]))).sum().backward()
    assert np.abs(t.grad).sum() > 0  # straight-through: the soft sample's gradient flows
    # sampling frequencies follow the probabilities (the Gumbel-max trick)
    counts = np.zeros(3)
    gen = np.random.default_rng(2)
    for _ in range(3000):
        counts[np.argmax(F.gumbel_softmax(mv.tensor(logits), tau=0.1, generator=gen).data)] += 1
    np.testing.assert_allclose(counts / counts.sum(), [0.7, 0.2, 0.1], atol=0.03)
    # a fixed sample's gradient matches finite differences
    gradcheck(lambda t: F.gumbel_softmax(t, tau=0.7, generator=np.random.default_rng(5)), leaf(logits))
    with pytest.raises(ValueError, match="tau"):
        F.gumbel_softmax(t, tau=0)
