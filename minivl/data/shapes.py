"""The shapes world: seeded scenes of coloured shapes with ground-truth boxes.

A laptop-scale stand-in for the image side of Conceptual Captions, COCO, VQA
and RefCOCO (lecture S02, S07, S10). Every object knows its shape, colour,
size and pixel box, so the ground truth replaces the Faster R-CNN detector that
ViLBERT reads its regions from (S04), and every sentence about a scene can be
generated, and checked, by rules.

Conventions
- A box is ``(x1, y1, x2, y2)`` in integer pixels with ``x2, y2`` exclusive:
  the object covers rows ``y1..y2-1`` and columns ``x1..x2-1``. ``x`` grows to
  the right and ``y`` grows downwards, as in an image array ``image[y, x]``.
- The class of an object is the (shape, colour) pair, ``class_id =
  shape * len(COLOURS) + colour``: 36 detector classes.
- Spatial relations compare boxes, not centres: ``a`` is left of ``b`` when
  ``a`` ends before ``b`` begins (``a.x2 <= b.x1``). Two objects that do not
  overlap are therefore always left/right of, or above/below, each other.
- The compositional split holds out some (colour, shape) pairs: the "train"
  split never shows them, every "test" scene shows at least one of them.

Rendering lives in ``render.py``; sentences about scenes in the task modules.

Why one file of ~350 lines: the scene model (objects, boxes, relations) and the
sampler that places objects are one contract; the conventions above bind both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
# No colour starts with a vowel, so the article is always "a" and a one-word
# swap (FOIL) never has to change the article too.
COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan")
COLOUR_RGB = np.array(
    [[220, 40, 40], [40, 180, 60], [40, 80, 230], [240, 220, 40], [150, 60, 200], [40, 200, 220]],
    dtype=np.uint8,
)  # (len(COLOURS), 3)
SIZES = ("small", "large")
BACKGROUND = (0, 0, 0)

N_CLASSES = len(SHAPES) * len(COLOURS)
CLASS_NAMES = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)  # index = class_id

RELATIONS = ("left", "right", "above", "below", "bigger", "smaller")
SPLITS = ("train", "test", "all")

# One held-out colour per shape and one shape per colour, so that the training
# split still shows every colour and every shape, only never these pairings.
DEFAULT_HELD_OUT_PAIRS = (
    ("red", "triangle"),
    ("green", "ring"),
    ("blue", "cross"),
    ("yellow", "circle"),
    ("purple", "square"),
    ("cyan", "diamond"),
)

MIN_IMAGE_SIZE = 16
MAX_OBJECTS = 9  # counts are spoken as words "zero" .. "nine"
GAP = 1  # pixels kept free between two objects when overlap is not allowed


def class_id(shape: int, colour: int) -> int:
    """The detector class of a (shape, colour) pair."""
    return shape * len(COLOURS) + colour


def lookup(name: str, vocabulary: tuple[str, ...], what: str) -> int:
    """Index of ``name`` in ``vocabulary``; a ValueError naming ``what`` otherwise."""
    if name not in vocabulary:
        raise ValueError(f"unknown {what} {name!r}; expected one of {vocabulary}")
    return vocabulary.index(name)


def object_extent(size: int, image_size: int) -> int:
    """Side of an object's (square) box in pixels: 3/16 (small) or 5/16 (large) of the image."""
    fraction = (3 / 16, 5 / 16)[size]
    return max(3, int(fraction * image_size + 0.5))


def max_objects_that_fit(image_size: int) -> int:
    """Most objects per scene we promise to place without overlap.

    Large boxes (plus the gap) could tile the image about ``(S / (L + gap))**2``
    times; random placement needs slack, so we promise half of that.
    """
    large = object_extent(1, image_size) + GAP
    return max(1, int(((image_size + GAP) / large) ** 2 / 2))


@dataclass(frozen=True)
class ShapeObject:
    """One object: indices into SHAPES / COLOURS / SIZES and its pixel box."""

    shape: int
    colour: int
    size: int
    box: tuple[int, int, int, int]  # (x1, y1, x2, y2), x2 and y2 exclusive

    @property
    def class_id(self) -> int:
        return class_id(self.shape, self.colour)

    @property
    def name(self) -> str:
        """E.g. ``"small red circle"``."""
        return f"{SIZES[self.size]} {COLOURS[self.colour]} {SHAPES[self.shape]}"

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass(frozen=True)
class Scene:
    """A square image's worth of objects (drawn in order, later ones on top)."""

    image_size: int
    objects: tuple[ShapeObject, ...]

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def boxes(self) -> np.ndarray:  # (K, 4) int64
        return np.array([o.box for o in self.objects], dtype=np.int64).reshape(-1, 4)

    @property
    def shapes(self) -> np.ndarray:  # (K,)
        return np.array([o.shape for o in self.objects], dtype=np.int64)

    @property
    def colours(self) -> np.ndarray:  # (K,)
        return np.array([o.colour for o in self.objects], dtype=np.int64)

    @property
    def sizes(self) -> np.ndarray:  # (K,)
        return np.array([o.size for o in self.objects], dtype=np.int64)

    @property
    def class_ids(self) -> np.ndarray:  # (K,)
        return np.array([o.class_id for o in self.objects], dtype=np.int64)


def relation_holds(relation: str, a: ShapeObject, b: ShapeObject) -> bool:
    """Whether ``a <relation> b``, e.g. ``relation_holds("left", a, b)``: a is left of b."""
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    if relation == "left":
        return ax2 <= bx1
    if relation == "right":
        return bx2 <= ax1
    if relation == "above":  # y grows downwards
        return ay2 <= by1
    if relation == "below":
        return by2 <= ay1
    if relation == "bigger":
        return a.size > b.size
    if relation == "smaller":
        return a.size < b.size
    raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")


def held_out_class_ids(held_out_pairs) -> frozenset[int]:
    """Class ids of ``(colour, shape)`` name pairs, checking every name."""
    ids = set()
    for pair in held_out_pairs:
        if len(pair) != 2:
            raise ValueError(f"held_out_pairs must hold (colour, shape) pairs, got {pair!r}")
        colour, shape = pair
        ids.add(class_id(lookup(shape, SHAPES, "shape"), lookup(colour, COLOURS, "colour")))
    if len(ids) == N_CLASSES:
        raise ValueError("held_out_pairs holds out every class; the train split would be empty")
    return frozenset(ids)


def check_scene_options(
    image_size: int,
    min_objects: int = 1,
    max_objects: int = 1,
    allow_overlap: bool = False,
    grid: int | None = None,
) -> None:
    """ValueError unless scenes with these settings can be drawn."""
    if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(
            f"need 1 <= min_objects <= max_objects, got min_objects={min_objects}, "
            f"max_objects={max_objects}"
        )
    if max_objects > MAX_OBJECTS:
        raise ValueError(f"max_objects={max_objects} is above {MAX_OBJECTS} (counts are words)")
    if grid is not None:
        if not isinstance(grid, (int, np.integer)) or grid < 1:
            raise ValueError(f"grid (cells per side) must be a positive integer or None, got {grid!r}")
        if max_objects > grid * grid:
            raise ValueError(f"max_objects={max_objects} do not fit in a {grid}x{grid} grid of cells")
        cell, large = image_size // grid, object_extent(1, image_size)
        if large + GAP > cell:
            raise ValueError(
                f"a large object ({large} px) plus the gap ({GAP} px) does not fit in a cell of "
                f"{cell} px (image_size={image_size}, grid={grid}); use a smaller grid"
            )
        return
    if not allow_overlap and max_objects > max_objects_that_fit(image_size):
        raise ValueError(
            f"max_objects={max_objects} do not fit apart in a {image_size}x{image_size} image "
            f"(at most {max_objects_that_fit(image_size)}); use a larger image_size or "
            "allow_overlap=True"
        )


def _check_request(n: int, split: str, held_out: frozenset[int]) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (number of scenes) must be a positive integer, got {n!r}")
    lookup(split, SPLITS, "split")
    if split == "test" and not held_out:
        raise ValueError('split="test" needs at least one held-out (colour, shape) pair')


def _pair_pools(split: str, held_out: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
    """Class ids an object may take: (first object's pool, other objects' pool)."""
    everything = np.arange(N_CLASSES)
    if split == "train":
        allowed = np.array(sorted(set(range(N_CLASSES)) - held_out))
        return allowed, allowed
    if split == "test":  # the first object drawn carries a held-out pair
        return np.array(sorted(held_out)), everything
    return everything, everything


def _apart(a, b) -> bool:
    """True when boxes a and b are at least GAP pixels apart along some axis."""
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def _place(sides, image_size, rng, allow_overlap, tries=8):
    """Boxes for squares of the given sides, kept GAP apart, or None.

    Objects are placed one after another, each at the first of ``tries``
    random corners that keeps it apart from those already placed. (Plain
    Python on purpose: for a handful of boxes it beats NumPy's call overhead.)
    """
    sides = np.asarray(sides)  # (k,)
    high = image_size - sides[:, None, None] + 1
    corners = rng.integers(0, high, size=(len(sides), tries, 2)).tolist()  # (k, tries, 2)
    placed = []
    for side, candidates in zip(sides.tolist(), corners):
        for x, y in candidates:
            box = (x, y, x + side, y + side)
            if allow_overlap or all(_apart(box, other) for other in placed):
                placed.append(box)
                break
        else:
            return None
    return placed


def _place_in_grid(sides, image_size, grid, rng):
    """Boxes in distinct cells of a ``grid x grid`` partition, each at a random offset
    inside its cell (leaving GAP pixels free at the cell's right and bottom edges)."""
    cell = image_size // grid
    cells = rng.choice(grid * grid, size=len(sides), replace=False)  # (k,)
    boxes = []
    for side, c in zip(sides, cells.tolist()):
        row, col = divmod(c, grid)
        dx, dy = rng.integers(0, cell - GAP - side + 1, size=2).tolist()
        x, y = col * cell + dx, row * cell + dy
        boxes.append((x, y, x + side, y + side))
    return boxes


def sample_scenes(
    n: int,
    rng: np.random.Generator,
    image_size: int = 32,
    min_objects: int = 1,
    max_objects: int = 3,
    split: str = "all",
    held_out_pairs=DEFAULT_HELD_OUT_PAIRS,
    allow_overlap: bool = False,
    grid: int | None = None,
) -> list[Scene]:
    """``n`` random scenes of ``min_objects..max_objects`` objects each.

    Shape/colour pairs are uniform over the split's pool, sizes uniform, boxes
    uniform over positions that keep the objects apart. With ``allow_overlap``
    objects may cover each other, even hide one another entirely, while the
    text tasks still describe every object.

    With ``grid=g`` the image is cut into ``g x g`` square cells and every
    object sits inside a cell of its own (at a random offset within it). A ViT
    whose patch is one cell then sees each object whole in one patch, instead
    of in pieces cut by the patch grid: the layout the CLIP recipe trains on.
    """
    check_scene_options(image_size, min_objects, max_objects, allow_overlap, grid)
    held_out = held_out_class_ids(held_out_pairs)
    _check_request(n, split, held_out)
    first_pool, other_pool = _pair_pools(split, held_out)
    # Draw every scene's attributes at once; scene i uses the first ks[i] columns.
    ks = rng.integers(min_objects, max_objects + 1, size=n)  # (n,)
    first = first_pool[rng.integers(len(first_pool), size=(n, 1))]  # (n, 1)
    others = other_pool[rng.integers(len(other_pool), size=(n, max_objects - 1))]  # (n, K-1)
    shapes, colours = np.divmod(np.concatenate([first, others], axis=1), len(COLOURS))  # (n, K)
    sizes = rng.integers(0, len(SIZES), size=(n, max_objects))  # (n, K)
    # a random drawing order, so that a test scene's held-out object is not always first
    orders = np.argsort(rng.random((n, max_objects)), axis=1)  # (n, K)
    scenes = []
    for i, k in enumerate(ks.tolist()):
        sides = [object_extent(s, image_size) for s in sizes[i, :k].tolist()]
        boxes = _place_in_grid(sides, image_size, grid, rng) if grid else None
        for _ in range(0 if grid else 1000):  # a crowded draw is placed again (always fits within the limit)
            boxes = _place(sides, image_size, rng, allow_overlap)
            if boxes is not None:
                break
        if boxes is None:
            raise RuntimeError(f"could not place {k} objects apart in {image_size}x{image_size}")
        order = [j for j in orders[i].tolist() if j < k]
        objects = tuple(
            ShapeObject(int(shapes[i, j]), int(colours[i, j]), int(sizes[i, j]), boxes[j])
            for j in order
        )
        scenes.append(Scene(image_size, objects))
    return scenes


def single_object_scenes(
    n: int,
    rng: np.random.Generator,
    image_size: int = 32,
    split: str = "all",
    held_out_pairs=DEFAULT_HELD_OUT_PAIRS,
) -> list[Scene]:
    """Scenes of one big object near the centre: easy classification, CLIP zero-shot.

    The object's side is 5/8 of the image, its position jittered by up to
    1/16 of the image; its size is "large".
    """
    check_scene_options(image_size)
    held_out = held_out_class_ids(held_out_pairs)
    _check_request(n, split, held_out)
    pool, _ = _pair_pools(split, held_out)
    side = int(0.625 * image_size + 0.5)
    jitter = image_size // 16
    classes = rng.choice(pool, n)
    corners = (image_size - side) // 2 + rng.integers(-jitter, jitter + 1, size=(n, 2))
    scenes = []
    for c, (x, y) in zip(classes.tolist(), corners.tolist()):
        shape, colour = divmod(c, len(COLOURS))
        obj = ShapeObject(shape, colour, size=1, box=(x, y, x + side, y + side))
        scenes.append(Scene(image_size, (obj,)))
    return scenes
