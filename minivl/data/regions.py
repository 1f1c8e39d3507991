"""Region tokens for ViLBERT: what the visual stream reads of each image (lecture S04, S05).

ViLBERT sees an image as a set of detected regions: per region a feature
vector (the detector's RoI-pooled features), a 5-d location
``[x1/W, y1/H, x2/W, y2/H, box area / image area]``, and the detector's class
distribution, which is the target of the masked-region loss (S08). A first
[IMG] token stands for the whole image: its feature is the mean of the
regions' features and its location ``[0, 0, 1, 1, 1]``.

    encoder = RegionEncoder.load_default()               # the trained detector (cached)
    batch = encoder.encode(images, scenes, jitter=0.1, rng=rng)
    batch.feats (B, 1+R, D), batch.locs (B, 1+R, 5), batch.mask (B, 1+R), batch.det_probs (B, 1+R, 36)

Region ``r`` (token ``1 + r``) is the scene's object ``r``, in the scene's
order; scenes with fewer objects are padded (mask False, labels -1, zeros
elsewhere). Boxes come from the ground truth, optionally jittered by
``jitter_boxes`` to mimic an imperfect detector; the features, locations and
``boxes`` are those of the boxes actually pooled.

``det_probs``, the KL target, comes from one of two detectors, named in
``RegionBatch.source``:

* ``"trained"`` (the default): the softmax of the classifier of the
  convolutional detector of ``minivl/models/detector.py``, trained by
  ``minivl/recipes/detector.py``;
* ``"simulated"``: the hand-made distributions of ``minivl/data/detector.py``
  (true class blurred towards look-alike classes), a fallback that needs the
  scenes. The features still come from the trained detector.

Row 0 ([IMG]) and padded rows of ``det_probs`` are zeros.

Feature scale: the detector's pooled features are post-ReLU means, all
positive, large and far from centred (on the default detector: mean 7.5,
standard deviation 12.7, up to 22 in some dimensions, two dimensions always
0), so every region's embedding shares one big common direction and the
class differences are a small part of it. The encoder therefore
*standardises* them, per dimension, with a mean and a standard deviation
fixed once from ``REFERENCE_SCENES`` reference scenes of the shapes world
(``standardise=False`` gives the raw features). Faster R-CNN features
are fed raw in the paper; this is the usual input scaling any linear
embedding wants, and it made the masked-region term learn (held-out KL
after 400 pretraining steps 2.93 raw, 2.71 standardised; see
``lectures/08-vilbert.md``). Padding stays exactly zero; [IMG] is the mean of
the standardised region features.

The locations stay as the paper defines them (fractions of the image); the
model standardises them itself (``minivl/models/vilbert.py::VisualEmbedding``,
with the statistics of ``location_stats``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl.data.boxes import location_features
from minivl.data.detector import detector_distributions
from minivl.data.render import render
from minivl.data.shapes import COLOURS, N_CLASSES, SHAPES, Scene, class_id, lookup
from minivl.models.detector import Detector
from minivl.models.vision import preprocess
from minivl.tensor import Tensor, no_grad

N_REGION_CLASSES = N_CLASSES  # 36 (shape, colour) pairs
IMG_LOCATION = np.array([0, 0, 1, 1, 1], dtype=np.float32)  # the [IMG] token covers the whole image
SOURCES = ("trained", "simulated")
REFERENCE_SCENES = 512  # scenes the feature statistics are measured on (fixed seed)


def region_class(shape, colour) -> int:
    """The detector class of a shape and a colour, given as names or indices."""
    shape = lookup(shape, SHAPES, "shape") if isinstance(shape, str) else int(shape)
    colour = lookup(colour, COLOURS, "colour") if isinstance(colour, str) else int(colour)
    if not (0 <= shape < len(SHAPES) and 0 <= colour < len(COLOURS)):
        raise ValueError(f"shape must lie in [0, {len(SHAPES)}) and colour in [0, {len(COLOURS)}), "
                         f"got {shape}, {colour}")
    return class_id(shape, colour)


@dataclass
class RegionBatch:
    """Region tokens of B images, token 0 = [IMG], then R regions (padded)."""

    feats: np.ndarray  # (B, 1+R, D) float32; token 0 = mean of the valid regions
    locs: np.ndarray  # (B, 1+R, 5) [x1/W, y1/H, x2/W, y2/H, area]; token 0 = [0, 0, 1, 1, 1]
    mask: np.ndarray  # (B, 1+R) bool, True = real token
    boxes: np.ndarray  # (B, R, 4) float32 pixel boxes pooled (jittered if asked), zeros on padding
    labels: np.ndarray  # (B, R) int64 true class, -1 on padding (and when only boxes were given)
    det_probs: np.ndarray  # (B, 1+R, N_REGION_CLASSES) float32 detector distribution; row 0 zeros
    source: str  # "trained" or "simulated": which detector gave det_probs

    def __len__(self) -> int:
        return len(self.feats)

    @property
    def n_regions(self) -> int:
        """R, the padded number of regions (tokens 1..R)."""
        return self.feats.shape[1] - 1

    def __getitem__(self, index) -> RegionBatch:
        """Rows of the batch (an index array, a slice or a boolean mask), as a RegionBatch."""
        index = np.arange(len(self))[index]
        index = np.atleast_1d(index)
        return RegionBatch(self.feats[index], self.locs[index], self.mask[index], self.boxes[index],
                           self.labels[index], self.det_probs[index], self.source)

    @staticmethod
    def concat(batches: list[RegionBatch]) -> RegionBatch:
        """Stack batches of one source and one R along the batch axis."""
        if not batches:
            raise ValueError("concat needs at least one RegionBatch")
        if len({b.source for b in batches}) > 1 or len({b.feats.shape[1:] for b in batches}) > 1:
            raise ValueError(f"batches differ in source or shape: {[(b.source, b.feats.shape) for b in batches]}")
        fields = ("feats", "locs", "mask", "boxes", "labels", "det_probs")
        return RegionBatch(**{f: np.concatenate([getattr(b, f) for b in batches]) for f in fields},
                           source=batches[0].source)


def jitter_boxes(boxes, jitter: float, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Move each side of each box by up to ``jitter`` times the box's extent, staying in the image.

    ``boxes (..., 4)`` pixels -> float32 ``(..., 4)``: ``x1, x2`` move by
    ``U(-jitter, jitter) * width``, ``y1, y2`` by ``U(-jitter, jitter) * height``;
    the result is clipped to ``[0, image_size]`` and keeps at least one pixel of
    width and height.
    """
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape (..., 4), got {boxes.shape}")
    if jitter == 0:
        return boxes.astype(np.float32)
    extent = np.concatenate([boxes[..., 2:] - boxes[..., :2]] * 2, axis=-1)  # (..., 4) w, h, w, h
    out = np.clip(boxes + rng.uniform(-jitter, jitter, boxes.shape) * extent, 0, image_size)
    for lo, hi in ((0, 2), (1, 3)):  # at least one pixel wide and high, inside the image
        out[..., hi] = np.maximum(out[..., hi], np.minimum(out[..., lo] + 1, image_size))
        out[..., lo] = np.minimum(out[..., lo], out[..., hi] - 1)
    return out.astype(np.float32)


def _pad(per_image: list[np.ndarray], width: int, fill, dtype) -> np.ndarray:
    """Ragged ``(K_i, ...)`` arrays -> ``(B, width, ...)``, padded with ``fill``."""
    tail = per_image[0].shape[1:]
    out = np.full((len(per_image), width, *tail), fill, dtype=dtype)
    for i, a in enumerate(per_image):
        out[i, : len(a)] = a
    return out


def reference_scenes(n: int = REFERENCE_SCENES, image_size: int = 32) -> list:
    """The ``n`` fixed scenes the feature and location statistics are measured on."""
    from minivl.data.world import ShapesWorld

    world = ShapesWorld(image_size=image_size, max_objects=3, seed=0)
    return world.iid_scenes(n, "train", rng=np.random.default_rng(12345))


def location_stats(n: int = REFERENCE_SCENES) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation ``(5,), (5,)`` of the 5-d locations of the
    regions of ``n`` fixed reference scenes (the scenes ``feature_stats`` uses; no detector
    needed): the figures ``minivl.models.vilbert.LOCATION_MEAN`` / ``LOCATION_STD`` quote."""
    scenes = reference_scenes(n)
    locs = np.concatenate([location_features(s.boxes, s.image_size) for s in scenes]).astype(np.float64)  # (regions, 5)
    return locs.mean(0), locs.std(0)


class RegionEncoder:
    """Turns images and their boxes into a ``RegionBatch`` with a trained ``Detector``.

    ``target`` chooses the KL target ``det_probs``: "trained" (the detector's
    softmax) or "simulated" (``minivl/data/detector.py``; needs scenes).
    ``standardise``: features become ``(feature - mean) / std`` per dimension,
    the statistics measured once on fixed reference scenes (``feature_stats``).
    """

    def __init__(self, detector: Detector, target: str = "trained", batch_size: int = 256,
                 standardise: bool = True):
        if target not in SOURCES:
            raise ValueError(f"target must be one of {SOURCES}, got {target!r}")
        self.detector = detector.eval()
        self.target, self.batch_size = target, batch_size
        self.mean = self.std = None
        if standardise:
            self.mean, self.std = self.feature_stats()

    def feature_stats(self, n: int = REFERENCE_SCENES) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and standard deviation ``(D,), (D,)`` of the detector's raw
        region features over ``n`` fixed reference scenes (ground-truth boxes); a
        dimension that never varies gets std 1, so it stays 0 after centring."""
        scenes = reference_scenes(n, self.image_size)
        boxes = _pad([s.boxes.astype(np.float32) for s in scenes], 3, 0, np.float32)  # (n, 3, 4)
        valid = _pad([np.ones(len(s), bool) for s in scenes], 3, False, bool)
        feats, _ = self._run_detector(preprocess(render(scenes)), boxes, valid)
        real = feats[valid].astype(np.float64)  # (regions, D)
        std = real.std(0)
        return real.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)

    @classmethod
    def load_default(cls, target: str = "trained", progress: bool = False, standardise: bool = True) -> RegionEncoder:
        """The default detector of ``minivl/recipes/detector.py``: loaded from its cache
        file, or trained (about a minute) and cached on first use."""
        from minivl.recipes.detector import default_detector  # a recipe: imported only when asked

        return cls(default_detector(progress=progress), target, standardise=standardise)

    @property
    def dim(self) -> int:
        """D, the size of a region feature."""
        return self.detector.config.dim

    @property
    def image_size(self) -> int:
        return self.detector.config.image_size

    def encode_scenes(self, scenes: list[Scene], jitter: float = 0.0, rng=None, max_regions=None) -> RegionBatch:
        """Render the scenes and encode them (the usual entry point on the shapes world)."""
        return self.encode(preprocess(render(scenes)), scenes, jitter, rng, max_regions)

    def encode(self, images, scenes_or_boxes, jitter: float = 0.0, rng=None, max_regions=None) -> RegionBatch:
        """Region tokens of ``images (B, 3, H, W)`` float32 (``preprocess``ed).

        ``scenes_or_boxes``: B ``Scene``s, or B arrays of pixel boxes ``(K_i, 4)``
        (then ``labels`` are -1 and only the "trained" target is possible).
        ``jitter`` (with ``rng``) moves the boxes, see ``jitter_boxes``.
        ``max_regions`` pads R to a fixed size (default: the most boxes in the batch).
        """
        images = np.asarray(images.numpy() if isinstance(images, Tensor) else images)
        S = self.image_size
        if images.ndim != 4 or images.shape[1:] != (3, S, S) or images.dtype.kind != "f":
            raise ValueError(f"images must be float (B, 3, {S}, {S}) (see preprocess), "
                             f"got {images.dtype} {images.shape}")
        if len(scenes_or_boxes) != len(images):
            raise ValueError(f"scenes_or_boxes has {len(scenes_or_boxes)} entries for {len(images)} images")
        scenes = scenes_or_boxes if all(isinstance(s, Scene) for s in scenes_or_boxes) else None
        if scenes is not None:
            if any(s.image_size != S for s in scenes):
                raise ValueError(f"scenes must have image_size {S} (the detector's)")
            per_boxes = [s.boxes for s in scenes]
            per_labels = [s.class_ids for s in scenes]
        else:
            per_boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in scenes_or_boxes]
            per_labels = [np.full(len(b), -1) for b in per_boxes]
            if self.target == "simulated":
                raise ValueError('target "simulated" needs scenes, not boxes')
        if jitter and rng is None:
            raise ValueError("jitter needs rng (a numpy Generator)")
        longest = max(len(b) for b in per_boxes)
        R = longest if max_regions is None else max_regions
        if R < longest or R < 1:
            raise ValueError(f"max_regions={max_regions} is below the most boxes in one image ({longest}) or 0")
        valid = _pad([np.ones(len(b), bool) for b in per_boxes], R, False, bool)  # (B, R)
        boxes = _pad([b.astype(np.float32) for b in per_boxes], R, 0, np.float32)  # (B, R, 4)
        boxes = np.where(valid[..., None], jitter_boxes(boxes, jitter, S, rng) if jitter else boxes, 0)
        labels = _pad(per_labels, R, -1, np.int64)  # (B, R)

        feats, probs = self._run_detector(images, boxes, valid)  # (B, R, D), (B, R, C)
        if self.mean is not None:  # standardised, padding kept at zero
            feats = ((feats - self.mean) / self.std * valid[..., None]).astype(np.float32)
        if self.target == "simulated":
            probs = _pad(detector_distributions(scenes, rng or np.random.default_rng(0)), R, 0, np.float32)
        counts = np.maximum(valid.sum(1, keepdims=True), 1)  # (B, 1)
        img = (feats * valid[..., None]).sum(1) / counts  # (B, D) mean of the valid regions
        locs = location_features(boxes.reshape(-1, 4), S).reshape(len(images), R, 5) * valid[..., None]
        B = len(images)
        return RegionBatch(
            feats=np.concatenate([img[:, None], feats], 1).astype(np.float32),  # (B, 1+R, D)
            locs=np.concatenate([np.broadcast_to(IMG_LOCATION, (B, 1, 5)), locs], 1).astype(np.float32),
            mask=np.concatenate([np.ones((B, 1), bool), valid], 1),  # (B, 1+R)
            boxes=boxes.astype(np.float32),
            labels=labels,
            det_probs=np.concatenate([np.zeros((B, 1, N_REGION_CLASSES), np.float32),
                                      probs * valid[..., None]], 1).astype(np.float32),
            source=self.target,
        )

    def _run_detector(self, images, boxes, valid):
        """Pooled features ``(B, R, D)`` and class probabilities ``(B, R, C)``, in chunks, no graph."""
        feats, probs = [], []
        with no_grad():
            for i in range(0, len(images), self.batch_size):
                sl = slice(i, i + self.batch_size)
                f = self.detector.region_features(images[sl], boxes[sl], valid[sl])  # (b, R, D)
                feats.append(f.numpy())
                probs.append(F.softmax(self.detector.classifier(f), axis=-1).numpy())
        feats = np.concatenate(feats) * valid[..., None]
        return feats.astype(np.float32), np.concatenate(probs).astype(np.float32)
