"""Hypothesis strategies the exercises draw their inputs from.

Arrays are drawn as (shape, dtype, scale, seed) and filled from a seeded
generator: hypothesis shrinks the shape towards size-1 axes, the scale towards
1 and the seed towards 0, so the failing input a student is shown is small,
while the draws still cover odd shapes, float32 and float64, and magnitudes
large enough to overflow an ``exp`` that forgot to subtract the maximum.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

DTYPES = st.sampled_from([np.float64, np.float32])
SCALES = st.sampled_from([1.0, 3.0, 1e-3, 30.0, 1e3])  # the last one overflows exp()
SEEDS = st.integers(0, 2**16)


def sizes(lo=1, hi=6):
    return st.integers(lo, hi)


def array(shape, dtype, scale, seed):
    """A reproducible array of standard normals times ``scale``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype)


@st.composite
def float_array(draw, min_dims=1, max_dims=3, max_side=6, scales=SCALES):
    """One array of any shape up to ``max_dims`` axes, float32 or float64."""
    shape = tuple(draw(st.lists(sizes(1, max_side), min_size=min_dims, max_size=max_dims)))
    return array(shape, draw(DTYPES), draw(scales), draw(SEEDS))
