"""The shared metrics (``minivl/metrics.py``): recall@k against sorting, known
answers of recall and top-k accuracy, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.metrics import retrieval_recall, top_k_accuracy


def brute_force_recall(sim, k):
    i2t = np.mean([i in np.argsort(-sim[i], kind="stable")[:k] for i in range(len(sim))])
    t2i = np.mean([j in np.argsort(-sim[:, j], kind="stable")[:k] for j in range(len(sim))])
    return i2t, t2i


@settings(deadline=None, max_examples=20)
@given(n=st.integers(2, 30), seed=st.integers(0, 1000))
def test_retrieval_recall_matches_sorting(n, seed):
    rng = np.random.default_rng(seed)
    img, txt = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))  # ties have probability 0
    got = retrieval_recall(img, txt)
    for k in (1, 5, 10):
        i2t, t2i = brute_force_recall(img @ txt.T, k)
        assert got[f"image_to_text_R@{k}"] == pytest.approx(i2t)
        assert got[f"text_to_image_R@{k}"] == pytest.approx(t2i)


def test_recall_and_accuracy_known_answers():
    e = np.eye(4)
    assert retrieval_recall(e, e)["image_to_text_R@1"] == 1.0
    assert retrieval_recall(e, e[[1, 0, 2, 3]])["text_to_image_R@1"] == 0.5
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    assert top_k_accuracy(probs, np.array([0, 1, 1]), ks=(1, 2)) == {"top1": 1 / 3, "top2": 1.0}


def test_metrics_reject_misaligned_inputs():
    with pytest.raises(ValueError, match="aligned"):
        retrieval_recall(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="labels"):
        top_k_accuracy(np.eye(3), np.array([0, 1]))


def test_ridge_predict_recovers_an_affine_map_and_checks_shapes():
    from minivl.metrics import ridge_predict

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)) * [1, 10, 0.1, 3] + 5  # unequal scales, off-centre
    w, b = np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [0.0, 0.25]]), np.array([7.0, -3.0])
    x_new = rng.standard_normal((20, 4))
    np.testing.assert_allclose(ridge_predict(x, x @ w + b, x_new, lam=1e-12), x_new @ w + b, atol=1e-6)
    assert ridge_predict(x, x[:, 0], x_new).shape == (20,)
    with pytest.raises(ValueError, match="x_fit"):
        ridge_predict(x, x[:10, 0], x_new)
