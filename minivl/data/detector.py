"""A simulated object detector: a soft class distribution for every object.

ViLBERT's masked-region loss (lecture S08) regresses, with a KL divergence,
the class distribution that the Faster R-CNN detector gave each region. Our
"detector" knows the true class and blurs it the way a real one errs: most
mass on the true (shape, colour) class, some on classes that look alike
(a ring for a circle, cyan for blue), a little everywhere, plus seeded noise.

    logits[c] = sharpness * similarity(true class, c) + noise * N(0, 1)
    p = softmax(logits)

``similarity`` of two classes is the product of a shape similarity (hand-set
below) and a colour similarity (a Gaussian of their RGB distance).
"""

from __future__ import annotations

import numpy as np

from minivl.data.shapes import COLOUR_RGB, SHAPES, Scene

# Which shapes a small, blurry detector would mix up, and how much.
_SHAPE_CONFUSIONS = {
    ("circle", "ring"): 0.6,
    ("square", "diamond"): 0.5,
    ("triangle", "diamond"): 0.4,
    ("circle", "diamond"): 0.3,
    ("cross", "square"): 0.3,
}
_SHAPE_FLOOR = 0.1  # any two shapes share something: both are coloured blobs


def shape_similarity() -> np.ndarray:
    """``(n_shapes, n_shapes)`` symmetric, 1 on the diagonal."""
    sim = np.full((len(SHAPES), len(SHAPES)), _SHAPE_FLOOR)
    for (a, b), value in _SHAPE_CONFUSIONS.items():
        i, j = SHAPES.index(a), SHAPES.index(b)
        sim[i, j] = sim[j, i] = value
    np.fill_diagonal(sim, 1.0)
    return sim


def colour_similarity(width: float = 0.25) -> np.ndarray:
    """``(n_colours, n_colours)``: ``exp(-d**2 / (2 width**2))``, d the scaled RGB distance.

    ``d`` is the Euclidean distance of the RGB triples in [0, 1], divided by sqrt(3).
    """
    rgb = COLOUR_RGB.astype(np.float64) / 255.0  # (C, 3)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) / np.sqrt(3)  # (C, C)
    return np.exp(-(d**2) / (2 * width**2))


def class_similarity() -> np.ndarray:
    """``(n_classes, n_classes)`` with class = shape * n_colours + colour."""
    return np.kron(shape_similarity(), colour_similarity())


def detector_distributions(
    scenes: list[Scene], rng: np.random.Generator, sharpness: float = 8.0, noise: float = 0.5
) -> list[np.ndarray]:
    """For each scene, a ``(K, n_classes)`` float32 array: one distribution per object."""
    if sharpness <= 0 or noise < 0:
        raise ValueError(f"need sharpness > 0 and noise >= 0, got {sharpness}, {noise}")
    similarity = class_similarity()  # (n_classes, n_classes)
    out = []
    for scene in scenes:
        logits = sharpness * similarity[scene.class_ids]  # (K, n_classes)
        logits = logits + noise * rng.standard_normal(logits.shape)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out.append((p / p.sum(axis=1, keepdims=True)).astype(np.float32))
    return out
