"""Pictures of ViLBERT's region tokens (lecture S04, S05).

* ``detections_figure``: images with their region boxes and the detector's
  top classes for each box (what the masked-region loss of S08 regresses);
* ``location_figure``: one image, one box, and its 5-d location vector
  ``[x1/W, y1/H, x2/W, y2/H, area]`` drawn both on the image and as bars.

Each function builds a ``matplotlib.figure.Figure`` (no pyplot), like
``minivl/viz/images.py``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minivl.data.shapes import CLASS_NAMES
from minivl.viz.images import image_grid

LOCATION_NAMES = ("x1/W", "y1/H", "x2/W", "y2/H", "area")


def top_classes(probs, top: int = 2, class_names=CLASS_NAMES) -> list[tuple[str, float]]:
    """The ``top`` classes of one distribution ``(n_classes,)``, most likely first."""
    probs = np.asarray(probs)
    order = np.argsort(-probs)[:top]
    return [(class_names[c], float(probs[c])) for c in order]


def detections_figure(images, batch, top: int = 2, true_labels: bool = True, ncols: int = 4,
                      panel_size: float = 2.6) -> Figure:
    """Images ``(N, H, W, 3)`` uint8 with the boxes of ``batch`` (a ``RegionBatch`` of the same N).

    Each box is labelled with the detector's ``top`` classes and their
    probabilities (``batch.det_probs``); under each image, the true classes,
    and a cross for every region whose top class is wrong.
    """
    images = np.asarray(images)
    if len(images) != len(batch):
        raise ValueError(f"images has {len(images)} entries, batch {len(batch)}")
    boxes, labels, captions = [], [], []
    for i in range(len(batch)):
        valid = np.flatnonzero(batch.mask[i, 1:])
        boxes.append(batch.boxes[i, valid])
        labels.append(["\n".join(f"{name} {p:.2f}" for name, p in top_classes(batch.det_probs[i, 1 + r], top))
                       for r in valid])
        if true_labels:
            words = []
            for r in valid:
                truth = batch.labels[i, r]
                right = truth < 0 or batch.det_probs[i, 1 + r].argmax() == truth
                words.append(("" if right else "x ") + (CLASS_NAMES[truth] if truth >= 0 else "?"))
            captions.append("true: " + ", ".join(words))
    return image_grid(images, captions if true_labels else None, boxes, labels, ncols=ncols,
                      panel_size=panel_size, box_colour="white")


def location_figure(image, box, image_size: int | None = None) -> Figure:
    """One image ``(H, W, 3)``, one pixel box ``(x1, y1, x2, y2)`` and its 5-d location vector."""
    from minivl.data.boxes import location_features

    image = np.asarray(image)
    size = image_size or image.shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    loc = location_features(np.array([[x1, y1, x2, y2]]), size)[0]  # (5,)
    fig = Figure(figsize=(7.5, 3.2))
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    ax_img.imshow(image, interpolation="nearest")
    ax_img.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="white", lw=1.5))
    ax_img.plot([x1 - 0.5], [y1 - 0.5], "o", color="orange")
    ax_img.plot([x2 - 0.5], [y2 - 0.5], "o", color="magenta")
    ax_img.annotate(f"(x1, y1) = ({x1:g}, {y1:g})", (x1 - 0.5, y1 - 0.5), xytext=(2, -6),
                    textcoords="offset points", color="orange", fontsize=8)
    ax_img.annotate(f"(x2, y2) = ({x2:g}, {y2:g})", (x2 - 0.5, y2 - 0.5), xytext=(2, 4),
                    textcoords="offset points", color="magenta", fontsize=8)
    ax_img.set_title(f"{size}x{size} image, one region", fontsize=9)
    ax_img.set_xticks([0, size - 1])
    ax_img.set_yticks([0, size - 1])
    bars = ax_bar.bar(LOCATION_NAMES, loc, color=["orange", "orange", "magenta", "magenta", "grey"])
    for bar, value in zip(bars, loc):
        ax_bar.text(bar.get_x() + bar.get_width() / 2, value + 0.02, f"{value:.3f}", ha="center", fontsize=8)
    ax_bar.set_ylim(0, 1.1)
    ax_bar.set_title("5-d location (S05): corners / image size, area fraction", fontsize=9)
    fig.tight_layout()
    return fig
