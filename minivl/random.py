"""One seeded random generator for everything minivl draws.

``minivl.manual_seed(0)`` makes parameter init, dropout masks, data shuffling
and sampling reproducible, as ``torch.manual_seed`` does. On the GPU, dropout
masks are drawn there (``device_rng``), from a CuPy generator seeded by the
host generator after each ``manual_seed``: drawing a mask on the host and
copying it over costs more than the layer it masks.
"""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)
_device_rng = None


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the global generator (and the GPU's, see ``device_rng``); returns it."""
    global _rng, _device_rng
    _rng = np.random.default_rng(seed)
    _device_rng = None
    return _rng


def rng() -> np.random.Generator:
    """The global generator (pass your own ``np.random.Generator`` to avoid it)."""
    return _rng


def device_rng(xp):
    """A ``RandomState`` of the array module ``xp`` (CuPy) for draws on the GPU, made on
    first use after each ``manual_seed`` from a seed the host generator draws."""
    global _device_rng
    if _device_rng is None:
        _device_rng = xp.random.RandomState(int(_rng.integers(2**31 - 1)))
    return _device_rng
