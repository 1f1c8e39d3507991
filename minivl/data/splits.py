"""An i.i.d. train / validation / test split of the shapes world, by scene.

Unlike the compositional split (``shapes.py``: held-out colour-shape pairs,
for zero-shot), this one asks for no generalisation beyond fresh scenes: the
three parts come from the same distribution. What it must rule out is a
test item the model has already seen, so a scene's part is a fixed function
of the objects it shows, not of when it was drawn:

- the key of a scene (``key="objects"``, the default) is the sorted list
  of its objects' (colour, shape) classes; a salted hash of the key, read as a number in [0, 1), falls in
  one of ``fractions``' intervals, and that is the scene's part;
- ``iid_scenes(n, part)`` draws scenes and keeps those of ``part``.

So two scenes with the same objects, however placed, always share a part,
whatever the seed or the order of the draws: no image is in two parts (an
identical image has the same key), nor any caption that names every object's
colour and shape (list captions, retrieval captions, MC rationales), nor any
NLVR pair (pairs are drawn inside one part's pool). Each task's items come
from one part's scenes, so every task inherits the split.
Shorter texts that fit scenes with different objects ("one circle.", "is
there a red circle?") do recur across parts: they are true of different
images there.

The price: because the key ignores positions and sizes, each part is i.i.d.
over keys (as scikit-learn's GroupShuffleSplit), not over scenes. With one
object per scene there are only 36 keys, so the parts' one-object scenes
show different classes (a text-only model trained on one part then does
*worse* than chance on another's FOIL captions: the true ones there name the
classes it saw only in foils). ``key="scene"`` splits by the image itself
instead: i.i.d. over scenes, no image in two parts, but short captions such
as "a red circle." then recur across parts.
"""

from __future__ import annotations

import hashlib

import numpy as np

from minivl.data.shapes import Scene, sample_scenes

IID_PARTS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


KEYS = ("objects", "scene")


def scene_key(scene: Scene, key: str = "objects") -> tuple:
    """What decides a scene's part: ``"objects"``, the sorted class ids of its objects;
    ``"scene"``, every object's class, size and box (the image itself)."""
    if key == "objects":
        return tuple(sorted(scene.class_ids.tolist()))
    if key == "scene":
        return tuple(sorted((o.class_id, o.size, o.box) for o in scene.objects))
    raise ValueError(f"unknown key {key!r}; expected one of {KEYS}")


def _check_fractions(fractions) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != len(IID_PARTS) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    return fractions


def iid_part(scene: Scene, fractions=DEFAULT_FRACTIONS, salt: int = 0, key: str = "objects") -> str:
    """The part ("train", "val" or "test") of a scene: a salted hash of its key."""
    fractions = _check_fractions(fractions)
    digest = hashlib.sha256(f"{salt}:{scene_key(scene, key)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    edges = np.cumsum(fractions)
    return IID_PARTS[min(int(np.searchsorted(edges, u, side="right")), len(IID_PARTS) - 1)]


def iid_scenes(
    n: int,
    part: str,
    rng: np.random.Generator,
    fractions=DEFAULT_FRACTIONS,
    salt: int = 0,
    key: str = "objects",
    max_draws: int = 200,
    **scene_options,
) -> list[Scene]:
    """``n`` scenes of ``part``, drawn with ``sample_scenes(..., **scene_options)``."""
    scene_key(sample_scenes(1, np.random.default_rng(0), **scene_options)[0], key)  # check key
    if part not in IID_PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {IID_PARTS}")
    fractions = _check_fractions(fractions)
    if fractions[IID_PARTS.index(part)] == 0:
        raise ValueError(f"part {part!r} has fraction 0 in {fractions}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (number of scenes) must be a positive integer, got {n!r}")
    out = []
    for _ in range(max_draws):  # a draw of 2n scenes keeps about 2n * fraction of them
        out += [s for s in sample_scenes(2 * n, rng, **scene_options) if iid_part(s, fractions, salt, key) == part]
        if len(out) >= n:
            return out[:n]
    raise RuntimeError(f"drew too few {part!r} scenes ({len(out)} of {n}); the part may be tiny")
