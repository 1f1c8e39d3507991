"""Rasterise shapes-world scenes to RGB images with vectorised NumPy.

Each shape is a boolean stencil, computed once per (shape, side) from a grid
of pixel-centre coordinates: a pixel belongs to the shape when its centre lies
inside it. Rendering a scene pastes the stencils of its objects into their
boxes, in order, so later objects cover earlier ones when overlap is allowed.
No per-pixel Python loop anywhere: 10,000 32x32 images take well under a
second on a 2-core laptop.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from minivl.data.shapes import BACKGROUND, COLOUR_RGB, SHAPES, Scene

# Each mask takes pixel-centre coordinates u (x, to the right) and v (y,
# downwards), both in [-1, 1] across the object's box, and h, half a pixel's
# height in those units.
_EPS = 1e-9  # keeps pixel centres that sit exactly on an edge inside
_MASKS = {
    "circle": lambda u, v, h: u**2 + v**2 <= 1 + _EPS,
    "square": lambda u, v, h: (np.abs(u) <= 1) & (np.abs(v) <= 1),
    # apex up, base at the bottom; measured at each row's lower edge (v + h) so
    # that the apex row is not empty when the side is even
    "triangle": lambda u, v, h: np.abs(u) <= (v + h + 1) / 2 + _EPS,
    "diamond": lambda u, v, h: np.abs(u) + np.abs(v) <= 1 + _EPS,
    "cross": lambda u, v, h: (np.abs(u) <= 1 / 3 + _EPS) | (np.abs(v) <= 1 / 3 + _EPS),
    "ring": lambda u, v, h: (u**2 + v**2 <= 1 + _EPS) & (u**2 + v**2 >= 0.25),
}
assert tuple(_MASKS) == SHAPES


@cache
def stencil(shape: int, height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of ``SHAPES[shape]`` filling its box (read-only)."""
    u = (np.arange(width) + 0.5) / width * 2 - 1  # (W,) pixel centres in [-1, 1]
    v = (np.arange(height) + 0.5) / height * 2 - 1  # (H,)
    mask = np.broadcast_to(
        _MASKS[SHAPES[shape]](u[None, :], v[:, None], 1 / height), (height, width)
    ).copy()
    mask.setflags(write=False)
    return mask


def render(scenes: list[Scene], background=BACKGROUND) -> np.ndarray:
    """RGB images of the scenes, ``(N, S, S, 3)`` uint8, S the scenes' common image size."""
    if len(scenes) == 0:
        raise ValueError("render needs at least one scene, got an empty list")
    size = scenes[0].image_size
    if any(s.image_size != size for s in scenes):
        raise ValueError(
            f"all scenes must share one image_size, got {sorted({s.image_size for s in scenes})}"
        )
    images = np.empty((len(scenes), size, size, 3), dtype=np.uint8)  # (N, S, S, 3)
    images[:] = np.asarray(background, dtype=np.uint8)
    for image, scene in zip(images, scenes):
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            image[y1:y2, x1:x2][stencil(obj.shape, y2 - y1, x2 - x1)] = COLOUR_RGB[obj.colour]
    return images
