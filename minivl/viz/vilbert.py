"""Pictures of what ViLBERT learned (lectures S06, S08).

* ``word_region_attention``: how much each word attends to each region in a
  co-attention block (the text half's weights, averaged over heads), read
  with ``nn.record``;
* ``co_attention_figure``: one image per word, its regions' boxes drawn with
  a thickness and a label that grow with that word's attention to them (the
  [IMG] token's share is written under the image);
* ``masked_region_figure``: for a masked region, the predicted class
  distribution next to the detector's (the KL target of S08), as bars.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot), as
``minivl/viz/images.py`` does.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minivl import nn
from minivl.data.shapes import CLASS_NAMES
from minivl.tensor import no_grad


def word_region_attention(model, ids, text_mask, feats, locs, region_mask, layer: int = -1) -> np.ndarray:
    """``(B, T, 1+R)``: each word's attention over the region tokens in co-attention block
    ``layer`` of a ``ViLBERT`` (mean over heads; rows sum to 1, padding gets 0)."""
    if not getattr(model, "co_blocks", None):
        raise ValueError(f"{type(model).__name__} has no co-attention blocks to read")
    was_training = model.training
    model.eval()
    with no_grad(), nn.record(model.co_blocks[layer].text) as rec:
        model.encode(ids, text_mask, feats, locs, region_mask)
    model.train(was_training)
    return rec.weights[0].numpy().mean(axis=1)  # (B, T, 1+R)


def co_attention_figure(image, boxes, words, weights, panel_size: float = 1.8, ncols: int = 6) -> Figure:
    """One panel per word: ``image (H, W, 3)`` uint8 with its region ``boxes (R, 4)``,
    each box as thick and as opaque as the word's attention to it.

    ``words``: the T token strings; ``weights (T, 1+R)``: row t is word t's
    attention over [IMG] and the R regions (``word_region_attention``).
    """
    weights, boxes = np.asarray(weights), np.asarray(boxes)
    if weights.shape != (len(words), 1 + len(boxes)):
        raise ValueError(f"weights must be (T, 1+R) = ({len(words)}, {1 + len(boxes)}), got {weights.shape}")
    n = len(words)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(panel_size * ncols, (panel_size + 0.4) * nrows))
    for t, word in enumerate(words):
        ax = fig.add_subplot(nrows, ncols, t + 1)
        ax.imshow(image)
        for r, (x1, y1, x2, y2) in enumerate(boxes):
            w = float(weights[t, 1 + r])
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="yellow",
                                   linewidth=0.5 + 4 * w, alpha=0.25 + 0.75 * w))
            ax.text(x1, y1 - 1, f"{w:.2f}", color="yellow", fontsize=6, va="bottom")
        ax.set_title(repr(word), fontsize=8)
        ax.set_xlabel(f"[IMG] {weights[t, 0]:.2f}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def masked_region_figure(predicted, detector, true_class: int | None = None, top: int = 8,
                         class_names=CLASS_NAMES) -> Figure:
    """Bars of the predicted distribution beside the detector's, over the ``top`` classes
    most likely under either (the true class is starred)."""
    predicted, detector = np.asarray(predicted, float), np.asarray(detector, float)
    if predicted.shape != detector.shape or predicted.ndim != 1:
        raise ValueError(f"predicted {predicted.shape} and detector {detector.shape} must be equal 1-D")
    order = np.argsort(-np.maximum(predicted, detector))[:top]
    x = np.arange(len(order))
    fig = Figure(figsize=(0.7 * len(order) + 1.5, 2.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(x - 0.2, detector[order], 0.4, label="detector (target)")
    ax.bar(x + 0.2, predicted[order], 0.4, label="ViLBERT (masked)")
    names = [("*" if c == true_class else "") + class_names[c] for c in order]
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("probability")
    ax.legend(fontsize=7)
    kl = float(np.sum(np.where(detector > 0, detector * (np.log(np.maximum(detector, 1e-12))
                                                          - np.log(np.maximum(predicted, 1e-12))), 0)))
    ax.set_title(f"masked region: KL(detector || predicted) = {kl:.2f}", fontsize=8)
    fig.tight_layout()
    return fig
