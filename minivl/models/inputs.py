"""The one input contract of every model, checked once, at the door.

* token ids: a NumPy integer array ``(B, N)``, every id below the vocabulary size;
* masks and segment ids: NumPy arrays of the ids' shape (a padding mask is
  True for real tokens);
* images: floats ``(B, C, H, W)``, a NumPy array or a Tensor (a Tensor when a
  gradient to the pixels is wanted); ``preprocess`` makes them from uint8
  pictures.

The public ``forward`` of each model body (``CausalTextEncoder``, ``BERT``,
``VisionEncoder``) calls these once and raises a ValueError naming the
argument and the shapes; the layers inside trust what they are given. The
models built on a body (GPT, ViT, CLIP) pass their inputs straight through.
"""

from __future__ import annotations

import numpy as np

from minivl.tensor import Tensor


def check_ids(ids, vocab_size, name="ids") -> np.ndarray:
    """``ids`` as given, or a ValueError: an integer ndarray ``(B, N)`` in ``[0, vocab_size)``."""
    if not isinstance(ids, np.ndarray):
        raise ValueError(f"{name} must be a NumPy integer array (B, N), got {type(ids).__name__}"
                         + ("; pass ids.numpy()" if isinstance(ids, Tensor) else ""))
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array of shape (B, N), got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} must lie in [0, {vocab_size}), got range [{ids.min()}, {ids.max()}]")
    return ids


def check_like_ids(array, ids, name, dtype=None) -> np.ndarray | None:
    """``array`` (a mask or segment ids) as an ndarray of ``ids``'s shape; None stays None."""
    if array is None:
        return None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a NumPy array of the shape of ids {ids.shape}, "
                         f"got {type(array).__name__}")
    if array.shape != ids.shape:
        raise ValueError(f"{name} must have the shape of ids {ids.shape}, got {array.shape}")
    return array if dtype is None else array.astype(dtype, copy=False)


def check_images(images, in_channels, image_size, patch_size) -> Tensor:
    """``images`` as a float Tensor ``(B, C, H, W)`` the encoder can embed, or a ValueError."""
    x = images if isinstance(images, Tensor) else Tensor(images)
    expected = f"(B, {in_channels}, {image_size}, {image_size})"
    if x.ndim != 4:
        raise ValueError(f"images must be 4-D (B, C, H, W) = {expected}, got shape {x.shape}; "
                         f"uint8 (B, H, W, C) batches go through preprocess()")
    if x.dtype.kind != "f":
        raise TypeError(f"images must be floating point, got dtype {x.dtype}; use preprocess()")
    _, C, H, W = x.shape
    if C != in_channels:
        raise ValueError(f"images have {C} channels (shape {x.shape}), the encoder expects "
                         f"{in_channels}: {expected}")
    if H % patch_size or W % patch_size:
        raise ValueError(f"image size {H}x{W} (shape {x.shape}) is not divisible by patch_size {patch_size}")
    if (H, W) != (image_size, image_size):
        raise ValueError(f"images are {H}x{W} (shape {x.shape}), but the position embedding "
                         f"was learned for {image_size}x{image_size}")
    return x
