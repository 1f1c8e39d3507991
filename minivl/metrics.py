"""Evaluation metrics shared by the models: top-k accuracy, zero-shot accuracy
(CLIP, lecture S16) and recall@k for image-text retrieval (CLIP paper,
section 3.1.4 and appendix E)."""

from __future__ import annotations

import numpy as np


def top_k_accuracy(probs, labels, ks=(1, 5)) -> dict:
    """``{"top1": ..., "top5": ...}``: how often the label is among the k most likely classes."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"need probs (B, C) and labels (B,), got {probs.shape} and {labels.shape}")
    rank = (probs > probs[np.arange(len(labels)), labels][:, None]).sum(axis=1)  # 0 = best
    return {f"top{k}": float(np.mean(rank < k)) for k in ks if k <= probs.shape[1]}


def zero_shot_accuracy(model, images, labels, class_names, templates, tokenizer, ks=(1, 5)) -> dict:
    """Top-k accuracy of a CLIP's zero-shot classifier built from ``templates`` (S16).

    Each class's prompts are encoded, averaged and renormalised
    (``CLIP.zero_shot_classifier``); every class in ``class_names`` competes.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError("zero-shot accuracy of an empty image set")
    classifier = model.zero_shot_classifier(class_names, templates, tokenizer)
    return top_k_accuracy(model.predict(images, classifier), labels, ks)


def retrieval_recall(image_emb, text_emb, ks=(1, 5, 10)) -> dict:
    """Recall@k in both directions for aligned pairs (image i <-> text i).

    ``image_to_text_R@k``: the fraction of images whose own caption is among
    the k texts most similar to it; ``text_to_image_R@k`` the other way.
    A tie counts against the pair (its rank is the number of others >= it).
    """
    image_emb, text_emb = np.asarray(image_emb), np.asarray(text_emb)
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"need aligned (n, d) embeddings, got {image_emb.shape} and {text_emb.shape}")
    sim = image_emb @ text_emb.T  # (n, n)
    true = np.diag(sim)
    i2t = (sim >= true[:, None]).sum(axis=1) - 1  # how many other texts score at least as high
    t2i = (sim >= true[None, :]).sum(axis=0) - 1
    out = {}
    for k in ks:
        out[f"image_to_text_R@{k}"] = float(np.mean(i2t < k))
        out[f"text_to_image_R@{k}"] = float(np.mean(t2i < k))
    return out


def embed_images(model, images, batch_size=256) -> np.ndarray:
    """Unit image embeddings ``(B, E)`` of a whole set, without a graph, in batches."""
    from minivl.models.vision import preprocess  # here, not at the top: models/clip.py imports this module
    from minivl.tensor import Tensor, no_grad

    arr = images.data if isinstance(images, Tensor) else images
    if not (isinstance(arr, np.ndarray) and arr.ndim == 4 and arr.dtype.kind == "f"):
        arr = preprocess(arr)  # uint8 (B, H, W[, C]) -> floats (B, C, H, W)
    out = []
    with no_grad():
        for i in range(0, len(arr), batch_size):
            out.append(model.encode_image(Tensor(arr[i: i + batch_size])).numpy())
    return np.concatenate(out)


def embed_texts(model, ids, key_padding_mask=None, batch_size=256) -> np.ndarray:
    """Unit text embeddings ``(B, E)`` of a whole set, without a graph, in batches."""
    from minivl.tensor import no_grad

    ids = np.asarray(ids)
    out = []
    with no_grad():
        for i in range(0, len(ids), batch_size):
            mask = None if key_padding_mask is None else key_padding_mask[i: i + batch_size]
            out.append(model.encode_text(ids[i: i + batch_size], mask).numpy())
    return np.concatenate(out)


def bleu(candidates, references, n=4) -> float:
    """Corpus BLEU-n (Papineni et al. 2002) of token lists, with uniform weights.

    ``candidates``: one token list per sentence; ``references``: a list of
    reference token lists per sentence. Each n-gram count of a candidate is
    clipped by the most times it appears in any one of its references
    (modified precision), summed over the corpus; BLEU is the geometric mean
    of the n precisions times the brevity penalty ``exp(1 - r / c)`` when the
    candidates' total length c is below r, the sum of the reference lengths
    closest to each candidate's. 0 when some precision is 0 (no smoothing).
    """
    from collections import Counter

    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one reference list per candidate, got {len(candidates)} candidates "
                         f"and {len(references)} reference lists")
    hits, totals = np.zeros(n), np.zeros(n)
    c_len = r_len = 0
    for cand, refs in zip(candidates, references):
        c_len += len(cand)
        r_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
        for k in range(1, n + 1):
            grams = Counter(tuple(cand[i:i + k]) for i in range(len(cand) - k + 1))
            most = Counter()
            for r in refs:
                most |= Counter(tuple(r[i:i + k]) for i in range(len(r) - k + 1))
            hits[k - 1] += sum(min(c, most[g]) for g, c in grams.items())
            totals[k - 1] += max(len(cand) - k + 1, 0)
    if (hits == 0).any():
        return 0.0
    log_p = np.mean(np.log(hits / totals))
    penalty = 1.0 if c_len > r_len else float(np.exp(1 - r_len / max(c_len, 1)))
    return float(penalty * np.exp(log_p))


def ridge_predict(x_fit, targets, x_new, lam=1e-2) -> np.ndarray:
    """A linear probe: ridge regression from ``x_fit (N, D)`` to ``targets (N,)`` or ``(N, K)``,
    applied to ``x_new (M, D)``. Features are standardised on ``x_fit`` and a bias is added;
    ``lam`` is per fitted example. Returns predictions shaped like ``targets``' rows."""
    x_fit, x_new = np.asarray(x_fit, np.float64), np.asarray(x_new, np.float64)
    targets = np.asarray(targets, np.float64)
    if x_fit.ndim != 2 or x_new.ndim != 2 or len(targets) != len(x_fit) or x_new.shape[1] != x_fit.shape[1]:
        raise ValueError(f"x_fit must be (N, D), targets (N, ...), x_new (M, D); got {x_fit.shape}, "
                         f"{targets.shape}, {x_new.shape}")
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    design = lambda x: np.c_[(x - mu) / sd, np.ones(len(x))]  # (n, D + 1)
    a = design(x_fit)
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ targets)  # (D + 1, ...)
    return design(x_new) @ w
