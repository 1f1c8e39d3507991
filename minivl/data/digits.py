"""The 8x8 handwritten digits shipped inside scikit-learn: a real dataset, no network.

1,797 greyscale images of the digits 0-9 (UCI "optical recognition of
handwritten digits"), ink values 0..16. Used for CLIP zero-shot ("a photo of
the digit seven.", lecture S16) and the dVAE demos (S25). Here they become
uint8 images, optionally upscaled (nearest or bilinear) and as RGB, with a
seeded train / val / test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.loader import split_indices

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a photo of the digit {}.", "a handwritten {}.", "the number {}.")
INTERPOLATIONS = ("nearest", "bilinear")


@dataclass(frozen=True)
class Digits:
    """``images``: ``(N, H, W)`` or ``(N, H, W, 3)`` uint8; ``labels``: ``(N,)`` int64 in 0..9."""

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...] = DIGIT_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def captions(self, template: str = DIGIT_TEMPLATES[0]) -> list[str]:
        """One caption per image, e.g. "a photo of the digit seven."."""
        return digit_captions(self.labels, template)


def digit_captions(labels, template: str = DIGIT_TEMPLATES[0]) -> list[str]:
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}', got {template!r}")
    return [template.format(DIGIT_NAMES[int(label)]) for label in labels]


def _source_positions(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For bilinear resizing along one axis: left neighbour, right neighbour, right weight.

    Pixel centres are aligned (``align_corners=False`` in PyTorch's words):
    output pixel ``i`` samples the input at ``(i + 0.5) * n_in / n_out - 0.5``,
    clamped to the image.
    """
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)  # (n_out,)
    left = np.floor(src).astype(np.int64)
    right = np.minimum(left + 1, n_in - 1)
    return left, right, src - left


def resize(images: np.ndarray, size: int, interpolation: str = "nearest") -> np.ndarray:
    """Resize ``(N, H, W)`` images to ``(N, size, size)`` float64."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    _, h, w = images.shape
    if interpolation == "nearest":  # output pixel i copies input pixel floor(i * n_in / n_out)
        rows = np.arange(size) * h // size
        cols = np.arange(size) * w // size
        return images[:, rows][:, :, cols]
    if interpolation == "bilinear":  # one axis at a time
        top, bottom, wy = _source_positions(h, size)
        images = (
            images[:, top] * (1 - wy[:, None]) + images[:, bottom] * wy[:, None]
        )  # (N, size, W)
        left, right, wx = _source_positions(w, size)
        return images[:, :, left] * (1 - wx) + images[:, :, right] * wx  # (N, size, size)
    raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {INTERPOLATIONS}")


def resize_matrix(n_in: int, n_out: int, interpolation: str = "bilinear") -> np.ndarray:
    """The ``(n_out, n_in)`` float32 matrix ``R`` with ``resize(x, n_out) == R @ x @ R.T`` for
    square ``(n_in, n_in)`` images: resizing is linear, so a model can upscale inside its
    graph (the CLIP-guided edit decodes 8 x 8 digits for a CLIP trained at 16 px)."""
    R = np.zeros((n_out, n_in), np.float64)
    if interpolation == "nearest":
        R[np.arange(n_out), np.arange(n_out) * n_in // n_out] = 1.0
    elif interpolation == "bilinear":
        left, right, w = _source_positions(n_in, n_out)
        np.add.at(R, (np.arange(n_out), left), 1 - w)
        np.add.at(R, (np.arange(n_out), right), w)
    else:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {INTERPOLATIONS}")
    return R.astype(np.float32)


def load_digits(
    split: str = "all",
    size: int = 8,
    interpolation: str = "nearest",
    rgb: bool = False,
    seed: int = 0,
    fractions=(0.8, 0.1, 0.1),
) -> Digits:
    """The scikit-learn digits as uint8 images (ink 0..16 mapped to 0..255).

    ``split`` is "train", "val", "test" (a seeded split in ``fractions``) or "all".
    """
    from sklearn.datasets import load_digits as _sklearn_digits  # ships with sklearn; no network

    if split not in ("train", "val", "test", "all"):
        raise ValueError(f'unknown split {split!r}; expected "train", "val", "test" or "all"')
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; expected one of {INTERPOLATIONS}"
        )
    raw = _sklearn_digits()
    images, labels = raw.images, raw.target.astype(np.int64)  # (1797, 8, 8) in 0..16, (1797,)
    if split != "all":
        keep = split_indices(len(labels), fractions, seed)[split]
        images, labels = images[keep], labels[keep]
    if size != images.shape[1]:
        images = resize(images, size, interpolation)
    images = np.clip(np.round(images * (255 / 16)), 0, 255).astype(np.uint8)  # (N, size, size)
    if rgb:
        images = np.repeat(images[..., None], 3, axis=-1)  # (N, size, size, 3)
    return Digits(images, labels)
