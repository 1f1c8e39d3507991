"""Shared plumbing of the row-wise Numba kernels: assert the contract, view the input as (rows, C).

Softmax, log-softmax and layer norm all work on the last axis; their kernels
take C-contiguous (rows, C) arrays, and these helpers make any layout and any
number of leading axes look like that (copying only when the input is not
contiguous already). The checks are asserts: ``minivl.functional`` validates
what users pass, and a kernel only guards its own contract.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def float_dtype(name, *arrays):
    """The common dtype of ``arrays``, asserted to be float32 or float64."""
    dtype = np.result_type(*arrays)
    assert dtype in FLOAT_DTYPES, f"{name}: needs float32 or float64 arrays, got {dtype}"
    return dtype


def as_rows(x, dtype):
    """``x`` as a C-contiguous (rows, C) array of ``dtype`` (a view when it can be)."""
    return np.ascontiguousarray(x, dtype).reshape((-1, x.shape[-1]) if x.size else (0, x.shape[-1]))


def check_same_shape(name, **arrays):
    """Assert that every array has the same shape, with at least one axis."""
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    first = next(iter(shapes.values()))
    assert len(first) > 0, f"{name}: needs at least one axis, got shapes {shapes}"
    assert all(s == first for s in shapes.values()), f"{name}: shapes must match, got {shapes}"
