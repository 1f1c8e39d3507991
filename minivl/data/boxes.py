"""Box helpers for region-based models: IoU, ViLBERT's 5-d location, padding.

- ``box_iou`` gives the referring-expression target of ViLBERT (the IoU of
  each region with the true box, zeroed below 0.5; lecture S10).
- ``location_features`` is ViLBERT's spatial vector (lecture S05):
  ``[x1/W, y1/H, x2/W, y2/H, box area / image area]``.
- ``stack_objects`` pads the ragged per-scene object lists into arrays.

Boxes are ``(x1, y1, x2, y2)`` with ``x2, y2`` exclusive (see shapes.py).
"""

from __future__ import annotations

import numpy as np

from minivl.data.shapes import Scene


def _as_boxes(boxes, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {boxes.shape}")
    return boxes


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Intersection over union of every pair: ``(N, 4), (M, 4) -> (N, M)``."""
    a = _as_boxes(boxes_a, "boxes_a")[:, None, :]  # (N, 1, 4)
    b = _as_boxes(boxes_b, "boxes_b")[None, :, :]  # (1, M, 4)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height  # (N, M)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def location_features(boxes, image_size: int) -> np.ndarray:
    """ViLBERT's 5-d location of each box, ``(N, 4) -> (N, 5)`` float32."""
    boxes = _as_boxes(boxes, "boxes") / image_size  # (N, 4) as fractions of the image
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    return np.concatenate([boxes, area[:, None]], axis=1).astype(np.float32)


def stack_objects(scenes: list[Scene], max_objects: int | None = None) -> dict[str, np.ndarray]:
    """Pad per-object ground truth to a common length K.

    Returns ``boxes (N, K, 4)`` int64, ``class_ids``, ``shapes``, ``colours``,
    ``sizes`` ``(N, K)`` int64 (0 where padded) and ``mask (N, K)`` bool,
    True for a real object.
    """
    if len(scenes) == 0:
        raise ValueError("stack_objects needs at least one scene, got an empty list")
    longest = max(len(s) for s in scenes)
    k = longest if max_objects is None else max_objects
    if k < longest:
        raise ValueError(f"max_objects={max_objects} is smaller than the largest scene ({longest})")
    n = len(scenes)
    out = {"boxes": np.zeros((n, k, 4), dtype=np.int64), "mask": np.zeros((n, k), dtype=bool)}
    for field in ("class_ids", "shapes", "colours", "sizes"):
        out[field] = np.zeros((n, k), dtype=np.int64)
    for i, scene in enumerate(scenes):
        m = len(scene)
        out["boxes"][i, :m] = scene.boxes
        out["mask"][i, :m] = True
        for field in ("class_ids", "shapes", "colours", "sizes"):
            out[field][i, :m] = getattr(scene, field)
    return out
