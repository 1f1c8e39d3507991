"""Image grids with captions underneath and boxes drawn on top.

Builds a ``matplotlib.figure.Figure`` directly (no pyplot), so it works under
the Agg backend, in scripts and in tests, and leaks no open figures; in a
notebook, a returned Figure displays itself. Boxes are ``(x1, y1, x2, y2)``
pixels with ``x2, y2`` exclusive, as in ``minivl.data``.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def image_grid(
    images,
    captions=None,
    boxes=None,
    box_labels=None,
    ncols: int = 8,
    panel_size: float = 1.6,
    box_colour: str = "white",
) -> Figure:
    """A grid of images, ``(N, H, W)`` or ``(N, H, W, 3)``, uint8 or floats in [0, 1].

    ``captions``: N strings, wrapped under the images. ``boxes``: N arrays of
    shape ``(K_i, 4)``; ``box_labels``: N lists of K_i strings written at each
    box's top-left corner.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 3), got {images.shape}")
    n = len(images)
    for name, values in (("captions", captions), ("boxes", boxes), ("box_labels", box_labels)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} images")
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    caption_height = 0.5 if captions is not None else 0.0
    fig = Figure(figsize=(ncols * panel_size, nrows * (panel_size + caption_height)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    wrap = max(8, int(panel_size * 12))  # characters per caption line
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        image = images[i]
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        if captions is not None:
            text = "\n".join(textwrap.wrap(str(captions[i]), wrap))
            ax.text(0.5, -0.04, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)
        panel_boxes = np.asarray(boxes[i]).reshape(-1, 4) if boxes is not None else ()
        for k, (x1, y1, x2, y2) in enumerate(panel_boxes):
            # pixel j spans [j - 0.5, j + 0.5] in imshow coordinates
            corner = (x1 - 0.5, y1 - 0.5)
            ax.add_patch(
                Rectangle(corner, x2 - x1, y2 - y1, fill=False, edgecolor=box_colour, linewidth=1)
            )
            if box_labels is not None:
                label = str(box_labels[i][k])
                ax.text(*corner, label, color=box_colour, fontsize=6, va="bottom", clip_on=True)
    fig.tight_layout()
    return fig
