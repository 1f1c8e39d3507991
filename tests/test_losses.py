"""CLIP's symmetric contrastive loss (minivl/losses.py::info_nce) against the
slide's NumPy pseudo-code (S15), finite differences, and its known limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivl as mv
from minivl import functional as F
from minivl.losses import info_nce
from minivl.testing import gradcheck

# --------------------------------------------------------------------------- the slide, in NumPy
# S15 line by line. The slide leaves l2_normalize and cross_entropy_loss
# undefined; `axis` is read as the axis the softmax runs over, so loss_i
# (axis=0, over the images of each column) is each text finding its image and
# loss_t (axis=1, over the texts of each row) is each image finding its text.


def l2_normalize(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def cross_entropy_loss(logits, labels, axis):
    logits = logits - logits.max(axis=axis, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=axis, keepdims=True))
    n = len(labels)
    picked = log_probs[labels, np.arange(n)] if axis == 0 else log_probs[np.arange(n), labels]
    return -picked.mean()


def slide_pseudo_code(I_f, T_f, W_i, W_t, t):
    n = I_f.shape[0]
    # joint multimodal embedding [n, d_e]
    I_e = l2_normalize(np.dot(I_f, W_i), axis=1)
    T_e = l2_normalize(np.dot(T_f, W_t), axis=1)
    # scaled pairwise cosine similarities [n, n]
    logits = np.dot(I_e, T_e.T) * np.exp(t)
    # symmetric loss function
    labels = np.arange(n)
    loss_i = cross_entropy_loss(logits, labels, axis=0)
    loss_t = cross_entropy_loss(logits, labels, axis=1)
    loss = (loss_i + loss_t) / 2
    return loss


def minivl_version(I_f, T_f, W_i, W_t, t):
    I_e = F.l2_normalize(I_f @ W_i, axis=1)
    T_e = F.l2_normalize(T_f @ W_t, axis=1)
    return info_nce(I_e, T_e, t)


@settings(deadline=None, max_examples=20)
@given(n=st.integers(1, 9), d_i=st.integers(1, 7), d_t=st.integers(1, 7), d_e=st.integers(1, 6),
       t=st.floats(-2.0, 4.6), seed=st.integers(0, 2**16))
def test_info_nce_equals_the_slides_pseudo_code(n, d_i, d_t, d_e, t, seed):
    rng = np.random.default_rng(seed)
    I_f, T_f = rng.standard_normal((n, d_i)), rng.standard_normal((n, d_t))
    W_i, W_t = rng.standard_normal((d_i, d_e)), rng.standard_normal((d_t, d_e))
    expected = slide_pseudo_code(I_f, T_f, W_i, W_t, t)
    got = minivl_version(*(mv.tensor(a) for a in (I_f, T_f, W_i, W_t)), mv.tensor(np.float64(t)))
    np.testing.assert_allclose(got.item(), expected, rtol=1e-10, atol=1e-12)


def test_info_nce_gradcheck_through_normalisation_and_temperature():
    rng = np.random.default_rng(0)
    args = [mv.tensor(rng.standard_normal(s), requires_grad=True)
            for s in ((5, 4), (5, 3), (4, 6), (3, 6))]
    t = mv.tensor(np.float64(np.log(1 / 0.07)), requires_grad=True)
    gradcheck(lambda a, b, c, d, s: minivl_version(a, b, c, d, s), *args, t)


def test_info_nce_gradient_on_the_embeddings():
    rng = np.random.default_rng(1)
    img = mv.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    txt = mv.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    gradcheck(lambda a, b: info_nce(a, b, 1.3), img, txt)


def test_perfect_alignment_drives_the_loss_to_zero_as_the_scale_grows():
    # orthonormal pairs: the diagonal is 1, everything else 0, so loss = log(1 + (n-1) e^-s)
    n = 4
    e = mv.tensor(np.eye(n))
    for s in (1.0, 3.0, np.log(100.0)):
        expected = np.log(1 + (n - 1) * np.exp(-np.exp(s)))
        np.testing.assert_allclose(info_nce(e, e, s).item(), expected, rtol=1e-12, atol=1e-14)


def test_swapping_images_and_texts_leaves_the_loss_unchanged():
    rng = np.random.default_rng(2)
    a = F.l2_normalize(mv.tensor(rng.standard_normal((7, 5))))
    b = F.l2_normalize(mv.tensor(rng.standard_normal((7, 5))))
    np.testing.assert_allclose(info_nce(a, b, 2.0).item(), info_nce(b, a, 2.0).item(), rtol=1e-12)


def test_random_embeddings_at_zero_scale_give_log_n():
    # exp(t) -> 0 makes every logit 0: a uniform guess over n candidates
    rng = np.random.default_rng(3)
    a, b = (mv.tensor(rng.standard_normal((8, 3))) for _ in range(2))
    np.testing.assert_allclose(info_nce(a, b, -50.0).item(), np.log(8), rtol=1e-9)


def test_info_nce_rejects_bad_shapes():
    a = mv.tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, mv.tensor(np.zeros((5, 3))), 1.0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        info_nce(mv.tensor(np.zeros(3)), mv.tensor(np.zeros(3)), 1.0)
    with pytest.raises(TypeError, match="minivl Tensor"):
        info_nce(np.zeros((4, 3)), a, 1.0)
