"""Gradient clipping by global norm (Pascanu et al., 2013, ICML), as PyTorch's ``clip_grad_norm_``.

All gradients are treated as one long vector: if its L2 norm exceeds
``max_norm``, every gradient is scaled by the same factor, so the update's
direction is kept and only its length is capped. Transformers are trained with
``max_norm = 1.0`` to survive the occasional huge gradient of a bad batch.
"""

from __future__ import annotations

import math

import numpy as np


def clip_grad_norm(params, max_norm):
    """Scale the gradients of ``params`` so their global L2 norm is at most ``max_norm``.

    Returns the norm *before* clipping (worth logging: spikes mean trouble).
    Parameters without a gradient are ignored. The ``1e-6`` keeps the factor
    finite for all-zero gradients and matches PyTorch.
    """
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be >= 0, got {max_norm}")
    params = [p for p in params if p.grad is not None]
    # Squares summed in float64: thousands of float32 partial sums lose digits otherwise.
    total = math.sqrt(sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in params))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for p in params:
            # Rebinding, not *=, as a gradient may be a read-only broadcast view.
            p.grad = p.grad * scale
    return total
