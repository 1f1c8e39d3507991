"""CLIP's InfoNCE over the global batch when the batch is split over ranks
(lecture S14: CLIP's batch of 32,768 was spread over many GPUs).

Each rank embeds only its own n pairs, but the loss needs every pair of the
global batch N = size * n as negatives. So the embeddings are all-gathered,
and the gather must pass gradients back: otherwise a rank's embeddings would
only learn from its own n rows of the logits. ``gather_with_grad`` is open_clip's
function of that name (Ilharco et al., open_clip ``loss.py``): forward an
all-gather, backward its adjoint, a reduce-scatter (sum over ranks of the
gradient of the gathered tensor, each rank keeping its own block).

Two ways to use the gathered embeddings:

* ``local_loss=False``: every rank builds the full N x N logits and the full
  loss (the same number on every rank);
* ``local_loss=True``: rank r builds only its n rows, ``I_r @ T_all^T`` and
  ``T_r @ I_all^T`` (n x N), with labels ``r * n + arange(n)``; the mean of the
  ranks' losses is the full loss, and memory per rank is n x N, not N x N.

In both cases averaging the parameter gradients over ranks (``DataParallel``)
gives exactly the single-process gradient of the global-batch loss.
"""

from __future__ import annotations

import numpy as np

from minivl import functional as F
from minivl.losses import info_nce
from minivl.tensor import Function, Tensor


class GatherWithGrad(Function):
    @staticmethod
    def forward(ctx, x, communicator):
        ctx.communicator = communicator
        return communicator.allgather(x)  # (size * n, d)

    @staticmethod
    def backward(ctx, g):
        return (ctx.communicator.reduce_scatter_sum(g),)  # (n, d): this rank's block, summed over ranks


def gather_with_grad(x, communicator) -> Tensor:
    """``(n, d)`` on every rank -> ``(size * n, d)``, rank 0's rows first, differentiable."""
    if x.ndim < 1:
        raise ValueError(f"gather_with_grad expects at least one axis (n, ...), got shape {x.shape}")
    return GatherWithGrad.apply(x, communicator=communicator)


def distributed_info_nce(image_emb, text_emb, logit_scale, communicator, local_loss=False):
    """The symmetric InfoNCE of S15 over the global batch; this rank holds pairs
    ``rank * n ... rank * n + n - 1`` as ``image_emb, text_emb (n, d)``."""
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"distributed_info_nce: image_emb {image_emb.shape} and text_emb {text_emb.shape} "
                         "must both be (n, d)")
    all_images = gather_with_grad(image_emb, communicator)  # (N, d)
    all_texts = gather_with_grad(text_emb, communicator)  # (N, d)
    if not local_loss:
        return info_nce(all_images, all_texts, logit_scale)
    if not isinstance(logit_scale, Tensor):
        logit_scale = Tensor(np.asarray(logit_scale, dtype=image_emb.dtype))
    scale = F.exp(logit_scale)
    n = image_emb.shape[0]
    labels = communicator.rank * n + np.arange(n)  # where my positives sit among the N columns
    logits_image = (image_emb @ all_texts.T) * scale  # (n, N): my images against every text
    logits_text = (text_emb @ all_images.T) * scale  # (n, N): my texts against every image
    loss_i = F.cross_entropy(logits_image, labels, axis=1)
    loss_t = F.cross_entropy(logits_text, labels, axis=1)
    return (loss_i + loss_t) * 0.5
