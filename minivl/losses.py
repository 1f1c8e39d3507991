"""Training objectives that compare whole batches (lecture S13 and S15).

``info_nce`` is CLIP's symmetric contrastive loss (Radford et al. 2021,
"Learning Transferable Visual Models From Natural Language Supervision",
Figure 3; van den Oord et al. 2018 named the InfoNCE form). The per-token
losses (MLM / LM cross-entropy, binary cross-entropy, KL) live in
``minivl/functional/losses.py``; other batch-level objectives join this file.
"""

from __future__ import annotations

import numpy as np

from minivl import functional as F
from minivl.tensor import Tensor


def info_nce(image_emb, text_emb, logit_scale):
    """The symmetric loss of slide S15, averaged over the two directions.

    ``image_emb (n, d)`` and ``text_emb (n, d)`` are L2-normalised embeddings
    where row ``i`` of one is paired with row ``i`` of the other; every other
    row of the batch is a negative. ``logit_scale`` is the learned log
    temperature ``t`` of the pseudo-code (a Tensor or a number): the logits are
    cosine similarities times ``exp(t)``.

        logits = exp(t) * I_e @ T_e.T                    (n, n)
        loss_i = CE(logits, labels, axis=0)   softmax over the images of each column:
                                              each text finds its image
        loss_t = CE(logits, labels, axis=1)   softmax over the texts of each row:
                                              each image finds its text
        loss   = (loss_i + loss_t) / 2,    labels = arange(n)

    Returns a scalar Tensor. The embeddings are not renormalised here:
    ``CLIP.encode_image`` / ``encode_text`` already return unit vectors.
    """
    for name, e in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(e, Tensor):
            raise TypeError(f"info_nce: {name} must be a minivl Tensor, got {type(e).__name__}")
        if e.ndim != 2:
            raise ValueError(f"info_nce: {name} must have shape (n, d), got {e.shape}")
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"info_nce: image_emb {image_emb.shape} and text_emb {text_emb.shape} "
                         "must have the same shape (n, d): row i of each is one pair")
    n = image_emb.shape[0]
    if not isinstance(logit_scale, Tensor):  # a plain number: take the embeddings' precision
        logit_scale = Tensor(np.asarray(logit_scale, dtype=image_emb.dtype))
    scale = F.exp(logit_scale)
    logits = (image_emb @ text_emb.T) * scale  # (n, n): row = image, column = text
    labels = np.arange(n)  # the positives lie on the diagonal
    loss_i = F.cross_entropy(logits, labels, axis=0)  # over the images of each column: text -> its image
    loss_t = F.cross_entropy(logits, labels, axis=1)  # over the texts of each row: image -> its text
    return (loss_i + loss_t) * 0.5
