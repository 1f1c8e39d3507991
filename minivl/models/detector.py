"""A small region classifier: the stand-in for ViLBERT's Faster R-CNN (lecture S04).

ViLBERT reads each image as the regions a detector found, a feature vector per
box (the detector's RoI-pooled features) and the detector's class distribution
for the box. Ours keeps the same two outputs on the shapes world, at a size
that trains in about a minute on two cores:

    images (B, 3, H, W)
      -> stem: Conv 3x3 + ReLU                              (B, width, H, W)
      -> down: Conv 3x3 stride 2 + ReLU                     (B, dim, H/2, W/2)
      -> blocks: x + Conv(ReLU(Conv(x))), then ReLU, x n    (B, dim, H/2, W/2)   the feature map
      -> RoI mean-pool inside each box                      (B, R, dim)          region features
      -> Linear                                             (B, R, n_classes)    class logits

The boxes are given (the ground truth, or jittered copies of it, as a
stand-in for an imperfect proposal stage); only the "what is in this box"
half of a detector is learnt. The classes are the 36 (shape, colour) pairs of
``minivl.data.shapes``. Training: ``minivl/recipes/detector.py``; the region
tokens ViLBERT reads: ``minivl/data/regions.py``.

RoI mean-pool: a feature-map cell belongs to a box when its centre, in pixels,
lies inside the box (``x1 <= centre < x2``, the same for y); a box too small
to hold a centre takes the one cell under its own centre. The pooled feature
is the mean of those cells, computed as one batched matrix product with a
fixed pooling matrix ``(B, R, h*w)``, so the gradient reaches the backbone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.tensor import Tensor


@dataclass
class DetectorConfig:
    image_size: int = 32
    in_channels: int = 3
    width: int = 16  # channels of the full-resolution stem
    dim: int = 32  # channels of the feature map = the region feature size D
    blocks: int = 2  # residual blocks at the stride-2 resolution
    n_classes: int = 36  # (shape, colour) pairs


class ResidualBlock(nn.Module):
    """``relu(x + conv2(relu(conv1(x))))`` with 3x3 convolutions that keep the size.

    ``conv2`` starts at a tenth of its default scale, so each block begins close
    to the identity (the role batch norm's zero-initialised gain plays in ResNets).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2.weight.data *= 0.1

    def forward(self, x):  # (B, C, h, w) -> (B, C, h, w)
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def pooling_matrix(boxes, box_mask, image_size: int, grid: int) -> np.ndarray:
    """``(B, R, 4)`` pixel boxes -> ``(B, R, grid*grid)`` float32 RoI mean-pool weights.

    Row ``(b, r)`` is ``1/n`` on the ``n`` cells of a ``grid x grid`` feature map
    (cell ``(i, j)`` flattened to ``i * grid + j``) whose centres lie inside the
    box, zero elsewhere; a box holding no centre gets the cell under its own
    centre; padded boxes (``box_mask`` False) get a row of zeros.
    """
    boxes = np.asarray(boxes, dtype=np.float64)  # (B, R, 4)
    stride = image_size / grid
    centres = (np.arange(grid) + 0.5) * stride  # (grid,) pixel centre of each cell
    x1, y1, x2, y2 = (boxes[..., k, None] for k in range(4))  # each (B, R, 1)
    in_x = (centres >= x1) & (centres < x2)  # (B, R, grid) columns inside
    in_y = (centres >= y1) & (centres < y2)  # (B, R, grid) rows inside
    # a box between two centres: the column / row under its centre
    cx = np.clip(((x1 + x2) / 2 // stride).astype(np.int64), 0, grid - 1)  # (B, R, 1)
    cy = np.clip(((y1 + y2) / 2 // stride).astype(np.int64), 0, grid - 1)
    cells = np.arange(grid)
    in_x = np.where(in_x.any(-1, keepdims=True), in_x, cells == cx)
    in_y = np.where(in_y.any(-1, keepdims=True), in_y, cells == cy)
    inside = in_y[..., :, None] & in_x[..., None, :]  # (B, R, grid, grid)
    inside &= np.asarray(box_mask, dtype=bool)[..., None, None]
    weights = inside.reshape(*inside.shape[:2], grid * grid).astype(np.float32)  # (B, R, grid*grid)
    counts = weights.sum(-1, keepdims=True)
    return np.divide(weights, counts, out=np.zeros_like(weights), where=counts > 0)


class Detector(nn.Module):
    """Conv backbone + RoI mean-pool + linear classifier; ``forward`` gives class logits per box."""

    Config = DetectorConfig

    def __init__(self, config: DetectorConfig | None = None, **overrides):
        super().__init__()
        c = self.config = DetectorConfig(**{**(asdict(config) if config else {}), **overrides})
        if c.image_size % 2:
            raise ValueError(f"image_size must be even (one stride-2 stage), got {c.image_size}")
        self.stem = nn.Conv2d(c.in_channels, c.width, 3, padding=1)
        self.down = nn.Conv2d(c.width, c.dim, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList([ResidualBlock(c.dim) for _ in range(c.blocks)])
        self.classifier = nn.Linear(c.dim, c.n_classes)

    @property
    def grid(self) -> int:
        """Side of the feature map: the image at stride 2."""
        return self.config.image_size // 2

    def _check(self, images, boxes, box_mask):
        c = self.config
        x = images if isinstance(images, Tensor) else Tensor(np.asarray(images))
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"images must have shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {x.shape}; uint8 pictures go through preprocess()")
        if x.dtype.kind != "f":
            raise TypeError(f"images must be floating point, got dtype {x.dtype}; use preprocess()")
        if boxes is None:
            return x, None, None
        boxes = np.asarray(boxes)
        if boxes.ndim != 3 or boxes.shape[0] != x.shape[0] or boxes.shape[2] != 4:
            raise ValueError(f"boxes must have shape (B, R, 4) with B = {x.shape[0]} (images {x.shape}), "
                             f"got {boxes.shape}")
        box_mask = np.ones(boxes.shape[:2], bool) if box_mask is None else np.asarray(box_mask, bool)
        if box_mask.shape != boxes.shape[:2]:
            raise ValueError(f"box_mask must have shape {boxes.shape[:2]} (boxes {boxes.shape}), got {box_mask.shape}")
        return x, boxes, box_mask

    def features(self, images):
        """The backbone's feature map: ``(B, C, H, W)`` -> ``(B, dim, H/2, W/2)`` Tensor."""
        x, _, _ = self._check(images, None, None)
        x = F.relu(self.stem(x))  # (B, width, H, W)
        x = F.relu(self.down(x))  # (B, dim, H/2, W/2)
        for block in self.blocks:
            x = block(x)
        return x

    def region_features(self, images, boxes, box_mask=None):
        """RoI mean-pooled features: ``(B, R, dim)`` Tensor, zeros on padded boxes."""
        x, boxes, box_mask = self._check(images, boxes, box_mask)
        return self.pool(self.features(x), boxes, box_mask)

    def pool(self, fmap, boxes, box_mask):
        """Mean of the feature map ``(B, D, g, g)`` inside each box ``(B, R, 4)`` -> ``(B, R, D)``."""
        B, D, g, _ = fmap.shape
        weights = Tensor(pooling_matrix(boxes, box_mask, self.config.image_size, g).astype(fmap.dtype))
        cells = F.transpose(F.reshape(fmap, (B, D, g * g)), (0, 2, 1))  # (B, g*g, D)
        return F.matmul(weights, cells)  # (B, R, D)

    def forward(self, images, boxes, box_mask=None):
        """Class logits per box: images ``(B, C, H, W)``, boxes ``(B, R, 4)`` -> ``(B, R, n_classes)``."""
        return self.classifier(self.region_features(images, boxes, box_mask))
