"""A judge that reads every object of a shapes-world image (lecture S27: scoring generations).

DALL-E's samples are judged by people or by a CLIP; here, where every scene
is known, a separate reader trained on real renders says what an image shows
and a generation is correct when that reading is exactly what its caption
says. The layout makes reading simple: objects sit one per cell of a
``grid x grid`` partition (``recipes/dvae.py::WORLD``), so the judge is a
small CNN applied to each cell:

    images (B, 3, S, S) -> cells (B * g * g, 3, S/g, S/g)
      -> conv-relu-pool, conv-relu-pool, linear-relu
      -> per cell: 1 + 36 logits (empty, or one (shape, colour) class) and 2 size logits

``reads`` turns these into ``Scene``s (each object given a box inside its
cell, which is all the spatial relations of the captions look at: two
objects in different columns are left / right of each other, in different
rows above / below); ``matches`` checks a caption (or a whole scene) against
the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.data.captions import Caption, holds
from minivl.data.shapes import COLOURS, N_CLASSES, Scene, ShapeObject, object_extent
from minivl.tensor import Tensor, no_grad

EMPTY = 0  # cell label 0 is "no object"; label c + 1 is class c


@dataclass
class JudgeConfig:
    image_size: int = 32
    grid: int = 2
    width: int = 16  # channels of the first conv; the second has twice as many
    hidden: int = 64


class Judge(nn.Module):
    """Per-cell reader: ``forward(images)`` -> ``(B, g*g, 1 + 36 + 2)`` logits."""

    Config = JudgeConfig

    def __init__(self, config: JudgeConfig | None = None, **kwargs):
        super().__init__()
        self.config = c = config or JudgeConfig(**kwargs)
        if c.image_size % (4 * c.grid):
            raise ValueError(f"image_size {c.image_size} must split into {c.grid} x {c.grid} cells "
                             "whose side is divisible by 4")
        self.conv1 = nn.Conv2d(3, c.width, 3, padding=1)
        self.conv2 = nn.Conv2d(c.width, 2 * c.width, 3, padding=1)
        side = c.image_size // c.grid // 4
        self.fc = nn.Linear(2 * c.width * side * side, c.hidden)
        self.head = nn.Linear(c.hidden, 1 + N_CLASSES + 2)

    @property
    def cell(self) -> int:
        return self.config.image_size // self.config.grid

    def forward(self, images) -> Tensor:
        x = images if isinstance(images, Tensor) else Tensor(np.asarray(images))
        S, g = self.config.image_size, self.config.grid
        if x.ndim != 4 or x.shape[1:] != (3, S, S) or x.dtype.kind != "f":
            raise ValueError(f"images must be floats (B, 3, {S}, {S}) in [0, 1], got {x.dtype} {x.shape}; "
                             "uint8 renders go through dvae.pixels()")
        B, c = x.shape[0], self.cell
        cells = x.reshape(B, 3, g, c, g, c).permute(0, 2, 4, 1, 3, 5).reshape(B * g * g, 3, c, c)
        h = F.max_pool2d(F.relu(self.conv1(cells - 0.5)), 2)  # (B g g, w, c/2, c/2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B g g, 2w, c/4, c/4)
        h = F.relu(self.fc(h.reshape(B * g * g, -1)))
        return self.head(h).reshape(B, g * g, -1)  # (B, g*g, 1 + 36 + 2)

    # ------------------------------------------------------------------ labels and readings

    def labels(self, scenes) -> tuple[np.ndarray, np.ndarray]:
        """Targets of ``scenes``: cell classes ``(B, g*g)`` (0 = empty, class + 1) and
        sizes ``(B, g*g)`` (-100 where the cell is empty)."""
        g, c = self.config.grid, self.cell
        classes = np.zeros((len(scenes), g * g), np.int64)
        sizes = np.full((len(scenes), g * g), -100, np.int64)
        for i, scene in enumerate(scenes):
            for obj in scene.objects:
                x1, y1 = obj.box[:2]
                k = (y1 // c) * g + x1 // c
                if classes[i, k] != EMPTY:
                    raise ValueError(f"scene {i} has two objects in cell {k}: the judge reads grid "
                                     f"layouts only (one object per cell of a {g} x {g} grid)")
                classes[i, k], sizes[i, k] = obj.class_id + 1, obj.size
        return classes, sizes

    def predict(self, images, batch_size=500) -> tuple[np.ndarray, np.ndarray]:
        """Cell classes and sizes ``(B, g*g)`` each, from float images ``(B, 3, S, S)``."""
        was = self.training
        self.eval()
        classes, sizes = [], []
        with no_grad():
            for i in range(0, len(images), batch_size):
                out = np.asarray(self(images[i:i + batch_size]).data)  # (b, g*g, 39)
                classes.append(out[..., : 1 + N_CLASSES].argmax(-1))
                sizes.append(out[..., 1 + N_CLASSES:].argmax(-1))
        self.train(was)
        return np.concatenate(classes), np.concatenate(sizes)

    def reads(self, images) -> list[Scene]:
        """What the judge sees in each image: a ``Scene`` per image (uint8 renders
        ``(B, S, S, 3)`` or floats ``(B, 3, S, S)``)."""
        classes, sizes = self.predict(_as_floats(images, self.config.image_size))
        g, c, S = self.config.grid, self.cell, self.config.image_size
        scenes = []
        for row_classes, row_sizes in zip(classes, sizes):
            objects = []
            for k, (label, size) in enumerate(zip(row_classes.tolist(), row_sizes.tolist())):
                if label == EMPTY:
                    continue
                shape, colour = divmod(label - 1, len(COLOURS))
                side = object_extent(size, S)
                x, y = (k % g) * c, (k // g) * c  # the cell's corner; any place inside it will do
                objects.append(ShapeObject(shape, colour, size, (x, y, x + side, y + side)))
            scenes.append(Scene(S, tuple(objects)))
        return scenes

    def matches(self, images, targets) -> np.ndarray:
        """Bool ``(B,)``: does image i show exactly ``targets[i]``?

        A ``Caption``: it is true of the reading and names every object read
        (as many objects as phrases). A ``Scene``: the reading has the same
        objects (shape, colour, size) in the same cells.
        """
        if len(targets) != len(images):
            raise ValueError(f"matches: {len(images)} images but {len(targets)} targets")
        read = self.reads(images)
        return np.array([_matches(r, t, self) for r, t in zip(read, targets)], dtype=bool)


def says_exactly(caption: Caption, scene: Scene) -> bool:
    """The caption is true of the scene and the scene holds nothing it does not name."""
    return len(scene) == len(caption.phrases) and holds(caption, scene)


def _matches(read: Scene, target, judge: Judge) -> bool:
    if isinstance(target, Caption):
        return says_exactly(target, read)
    if isinstance(target, Scene):
        return all((np.asarray(a) == np.asarray(b)).all()
                   for a, b in zip(judge.labels([read]), judge.labels([target])))
    raise ValueError(f"targets must be Captions or Scenes, got {type(target).__name__}")


def _as_floats(images, size) -> np.ndarray:
    arr = images.data if isinstance(images, Tensor) else np.asarray(images)
    if arr.dtype == np.uint8:
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (B, S, S, 3), got {arr.shape}")
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return arr.astype(np.float32, copy=False)
