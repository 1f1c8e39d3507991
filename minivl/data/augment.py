"""Simple image augmentations for batches: random flips and small shifts.

Each takes a batch ``(B, H, W)`` or ``(B, H, W, C)`` and a Generator and
returns a new batch. Use them where the labels do not change with the
picture: flipping a shapes-world image turns "left of" into "right of", and a
shift moves its boxes, so leave them off for captions with relations and for
region-level tasks.
"""

from __future__ import annotations

import numpy as np


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must have shape (B, H, W) or (B, H, W, C), got {images.shape}")
    return images


def random_flip(images, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``."""
    images = _check(images)
    flip = rng.random(len(images)) < p  # (B,)
    out = images.copy()
    out[flip] = images[flip][:, :, ::-1]
    return out


def random_shift(images, rng: np.random.Generator, max_shift: int = 2, fill=0) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with ``fill``."""
    images = _check(images)
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    b, h, w = images.shape[:3]
    m = max_shift
    pad = [(0, 0), (m, m), (m, m)] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad, constant_values=fill)  # (B, H + 2m, W + 2m, ...)
    dy, dx = rng.integers(-m, m + 1, size=(2, b))  # (B,), (B,)
    # output pixel (y, x) reads padded pixel (y + m - dy, x + m - dx): content moves by (dy, dx)
    rows = np.arange(h)[None, :] + m - dy[:, None]  # (B, H)
    cols = np.arange(w)[None, :] + m - dx[:, None]  # (B, W)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def compose(*augmentations):
    """Apply augmentations one after another: ``compose(random_flip, random_shift)``."""

    def apply(images, rng):
        for augmentation in augmentations:
            images = augmentation(images, rng)
        return images

    return apply
