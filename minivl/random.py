"""One seeded random generator for everything minivl draws.

``minivl.manual_seed(0)`` makes parameter init, dropout masks, data shuffling
and sampling reproducible, as ``torch.manual_seed`` does.
"""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the global generator; returns it."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def rng() -> np.random.Generator:
    """The global generator (pass your own ``np.random.Generator`` to avoid it)."""
    return _rng
