"""A judge that reads every object of a shapes-world image (lecture S27: scoring generations).

DALL-E's samples are judged by people or by a CLIP; here, where every scene
is known, a separate reader trained on real renders says what an image shows
and a generation is correct when that reading is exactly what its caption
says. Objects sit one per cell of a ``grid x grid`` partition
(``recipes/dvae.py::WORLD``), so the judge is a small detector-style reader
applied to each cell:

    images (B, 3, S, S) -> cells (B g g, 3, c, c)
      -> silhouette: pixels brighter than THRESHOLD in any channel; its bounding box
      -> features: the silhouette cropped to the box and resampled to 8 x 8 (the shape,
         wherever the object sits and whatever its size), the mean colour inside it,
         the box's height and width, the fraction of the cell it covers
      -> MLP -> per cell: 1 + 6 shape logits (empty, or a shape), 6 colour, 2 size logits

Only the MLP is learned (``recipes/judge.py``): locating the object first is
what lets it learn the shapes in seconds; a CNN over whole cells needed
thousands of steps to tell a small circle from a small square.

``reads`` turns the logits into ``Scene``s, each object with its silhouette's
box, so relations are read from where objects are drawn (two objects in one
column of cells can still be left / right of each other: a caption may say
so); ``matches`` checks a caption (or a whole scene) against the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.data.captions import Caption, holds
from minivl.data.shapes import COLOURS, SHAPES, SIZES, Scene, ShapeObject, object_extent
from minivl.device import asarray
from minivl.tensor import Tensor, no_grad

EMPTY = 0  # shape label 0 is "no object"; label s + 1 is SHAPES[s]
HEADS = (1 + len(SHAPES), len(COLOURS), len(SIZES))  # logits per cell: shape, colour, size
THRESHOLD = 0.35  # a pixel belongs to an object when a channel is above this (background: black)
CROP = 8  # side of the resampled silhouette


def silhouette_boxes(cells, threshold=THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """The silhouette ``(N, c, c)`` of each cell ``(N, 3, c, c)`` and its bounding box ``(N, 4)``
    as ``(x1, y1, x2, y2)`` in the cell's pixels (ends exclusive; all 0 in an empty cell)."""
    c = cells.shape[-1]
    mask = cells.max(axis=1) > threshold  # (N, c, c)
    rows, cols = mask.any(axis=2), mask.any(axis=1)  # (N, c)
    y1, x1 = rows.argmax(axis=1), cols.argmax(axis=1)  # first row / column with ink (0 if none)
    y2, x2 = c - rows[:, ::-1].argmax(axis=1), c - cols[:, ::-1].argmax(axis=1)  # exclusive ends
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    boxes[~rows.any(axis=1)] = 0
    return mask, boxes


def cell_features(cells, threshold=THRESHOLD, crop=CROP) -> np.ndarray:
    """``(N, 3, c, c)`` floats in [0, 1] -> ``(N, crop * crop + 6)`` features of each cell's object."""
    N, _, c, _ = cells.shape
    mask, boxes = silhouette_boxes(cells, threshold)
    x1, y1, x2, y2 = boxes.T  # (N,) each
    h, w = np.maximum(y2 - y1, 1), np.maximum(x2 - x1, 1)
    t = (np.arange(crop) + 0.5) / crop  # (crop,) sample points across the box
    ys = np.minimum(y1[:, None] + (t * h[:, None]).astype(int), c - 1)  # (N, crop)
    xs = np.minimum(x1[:, None] + (t * w[:, None]).astype(int), c - 1)
    crops = mask[np.arange(N)[:, None, None], ys[:, :, None], xs[:, None, :]]  # (N, crop, crop)
    area = mask.sum(axis=(1, 2))  # (N,)
    colour = (cells * mask[:, None]).sum(axis=(2, 3)) / np.maximum(area, 1)[:, None]  # (N, 3)
    shape = np.stack([h, w, area / (c * c)], axis=1) * np.array([1 / c, 1 / c, 1.0])  # (N, 3)
    empty = area == 0
    shape[empty] = 0
    return np.concatenate([crops.reshape(N, -1), colour, shape], axis=1).astype(np.float32)


@dataclass
class JudgeConfig:
    image_size: int = 32
    grid: int = 2
    hidden: int = 64


class Judge(nn.Module):
    """Per-cell reader: ``forward(images)`` -> ``(B, g*g, 7 + 6 + 2)`` logits (shape, colour, size)."""

    Config = JudgeConfig

    def __init__(self, config: JudgeConfig | None = None, **kwargs):
        super().__init__()
        self.config = c = config or JudgeConfig(**kwargs)
        if c.image_size % c.grid:
            raise ValueError(f"image_size {c.image_size} must split into {c.grid} x {c.grid} cells")
        self.fc = nn.Linear(CROP * CROP + 6, c.hidden)
        self.head = nn.Linear(c.hidden, sum(HEADS))

    @property
    def cell(self) -> int:
        return self.config.image_size // self.config.grid

    def forward(self, images) -> Tensor:
        x = images.data if isinstance(images, Tensor) else asarray(images)  # host or device
        S, g = self.config.image_size, self.config.grid
        if x.ndim != 4 or x.shape[1:] != (3, S, S) or x.dtype.kind != "f":
            raise ValueError(f"images must be floats (B, 3, {S}, {S}) in [0, 1], got {x.dtype} {x.shape}; "
                             "uint8 renders go through dvae.pixels()")
        h = F.relu(self.fc(Tensor(cell_features(self.cells(x)) - 0.5)))  # (B g g, hidden)
        return self.head(h).reshape(x.shape[0], g * g, -1)  # (B, g*g, 7 + 6 + 2)

    def cells(self, x) -> np.ndarray:
        """``(B, 3, S, S)`` -> ``(B g g, 3, c, c)``, cell k = row * g + column of each image."""
        B, g, c = x.shape[0], self.config.grid, self.cell
        return x.reshape(B, 3, g, c, g, c).transpose(0, 2, 4, 1, 3, 5).reshape(B * g * g, 3, c, c)

    # ------------------------------------------------------------------ labels and readings

    def labels(self, scenes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Targets of ``scenes``, each ``(B, g*g)``: shapes (0 = empty, shape + 1), colours
        and sizes (-100, ignored, where the cell is empty)."""
        g, c = self.config.grid, self.cell
        shapes = np.zeros((len(scenes), g * g), np.int64)
        colours = np.full((len(scenes), g * g), -100, np.int64)
        sizes = np.full((len(scenes), g * g), -100, np.int64)
        for i, scene in enumerate(scenes):
            for obj in scene.objects:
                k = cell_index(obj, g, c)
                if shapes[i, k] != EMPTY:
                    raise ValueError(f"scene {i} has two objects in cell {k}: the judge reads grid "
                                     f"layouts only (one object per cell of a {g} x {g} grid)")
                shapes[i, k], colours[i, k], sizes[i, k] = obj.shape + 1, obj.colour, obj.size
        return shapes, colours, sizes

    def predict(self, images, batch_size=500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shapes (0 = empty), colours and sizes ``(B, g*g)`` each, from floats ``(B, 3, S, S)``;
        colour and size are -100 in empty cells, as in ``labels``."""
        was = self.training
        self.eval()
        parts = []
        with no_grad():
            for i in range(0, len(images), batch_size):
                out = self(images[i:i + batch_size]).numpy()  # (b, g*g, 15)
                pieces = np.split(out, np.cumsum(HEADS)[:-1], axis=-1)
                parts.append([p.argmax(-1) for p in pieces])
        self.train(was)
        shapes, colours, sizes = (np.concatenate(p) for p in zip(*parts))
        empty = shapes == EMPTY
        return shapes, np.where(empty, -100, colours), np.where(empty, -100, sizes)

    def reads(self, images) -> list[Scene]:
        """What the judge sees in each image: a ``Scene`` per image (uint8 renders
        ``(B, S, S, 3)`` or floats ``(B, 3, S, S)``)."""
        x = _as_floats(images, self.config.image_size)
        shapes, colours, sizes = self.predict(x)
        g, c, S = self.config.grid, self.cell, self.config.image_size
        boxes = silhouette_boxes(self.cells(x))[1].reshape(len(x), g * g, 4)  # (B, g*g, 4) in cells
        scenes = []
        for row in zip(shapes.tolist(), colours.tolist(), sizes.tolist(), boxes.tolist()):
            objects = []
            for k, (shape, colour, size, (x1, y1, x2, y2)) in enumerate(zip(*row)):
                if shape == EMPTY:
                    continue
                x, y = (k % g) * c, (k // g) * c  # the cell's corner
                if x2 <= x1:  # read as an object, yet no pixel above the threshold: a box of its size
                    x2, y2 = x1 + object_extent(size, S), y1 + object_extent(size, S)
                objects.append(ShapeObject(shape - 1, colour, size, (x + x1, y + y1, x + x2, y + y2)))
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


def cell_index(obj: ShapeObject, grid: int, cell: int) -> int:
    """The cell (row * grid + column) holding an object's top-left corner, cells ``cell`` px wide."""
    x1, y1 = obj.box[:2]
    return (y1 // cell) * grid + x1 // cell


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
    arr = images.data if isinstance(images, Tensor) else asarray(images)
    if arr.dtype == np.uint8:
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (B, S, S, 3), got {arr.shape}")
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return arr.astype(np.float32, copy=False)
