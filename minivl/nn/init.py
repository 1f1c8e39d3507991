"""Parameter initialisers, all drawing from ``minivl.random`` (so ``manual_seed`` fixes them)."""

from __future__ import annotations

import math

import numpy as np

from minivl.random import rng


def normal(shape, std=0.02, dtype=np.float32):
    """N(0, std^2): GPT-2 / BERT / ViT initialise most weights with std 0.02."""
    return (rng().standard_normal(shape) * std).astype(dtype)


def uniform_fan_in(shape, fan_in, dtype=np.float32):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for Linear and Conv2d."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return rng().uniform(-bound, bound, shape).astype(dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)
