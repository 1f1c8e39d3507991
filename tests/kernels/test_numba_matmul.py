"""Numba matmul (kernels/numba/matmul.py) against NumPy's matmul (the reference)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minivl.kernels import reference as ref
from minivl.kernels.numba import matmul as nb

import minivl as mv
import minivl.functional as F
from minivl.testing import LAYOUTS
from minivl.testing import with_layout as layout

# relative tolerance per dtype; the absolute one grows like sqrt(K) for
# unit-normal inputs (a sum of K rounded products)
RTOL = {np.float32: 1e-5, np.float64: 1e-13}
ATOL_PER_SQRT_K = {np.float32: 1e-5, np.float64: 1e-13}


def close(actual, expected, dtype, k):
    assert actual.dtype == dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL_PER_SQRT_K[dtype] * np.sqrt(k + 1))



sizes = st.sampled_from([1, 3, 7, 33, 65, 257])


@settings(deadline=None, max_examples=30)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    m=sizes, k=sizes, n=sizes,
    batches=st.sampled_from([((), ()), ((2,), ()), ((), (3,)), ((2, 1), (3,)), ((1, 2), (4, 1))]),
    kinds=st.tuples(*[st.sampled_from(LAYOUTS)] * 2),
    seed=st.integers(0, 2**16),
)
def test_matmul_matches_numpy(dtype, m, k, n, batches, kinds, seed):
    rng = np.random.default_rng(seed)
    a = layout(rng.standard_normal(batches[0] + (m, k)).astype(dtype), kinds[0])
    b = layout(rng.standard_normal(batches[1] + (k, n)).astype(dtype), kinds[1])
    close(nb.matmul(a, b), ref.matmul(a, b), dtype, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_and_tails(dtype):
    """Sizes that cross every block boundary (MC, KC, NC) with ragged tails."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((nb.MC + 5, 2 * nb.KC + 3)).astype(dtype)
    b = rng.standard_normal((2 * nb.KC + 3, nb.NC + 9)).astype(dtype)
    close(nb.matmul(a, b), a @ b, dtype, a.shape[1])
    close(nb.matmul_v1(a, b), a @ b, dtype, a.shape[1])


def test_vectors_mixed_dtypes_and_empty():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5)).astype(np.float32)
    v = rng.standard_normal(5)
    close(nb.matmul(a, v), a @ v, np.float64, 5)  # float32 @ float64 -> float64
    close(nb.matmul(v, a.T), v @ a.T, np.float64, 5)
    assert nb.matmul(v, v).shape == ()
    np.testing.assert_allclose(nb.matmul(v, v), v @ v)
    assert (nb.matmul(np.zeros((3, 0)), np.zeros((0, 2))) == 0).all()
    assert nb.matmul(np.zeros((0, 3)), np.zeros((3, 2))).shape == (0, 2)
    np.testing.assert_array_equal(nb.matmul(np.arange(6).reshape(2, 3), np.arange(3)), [5, 14])


def test_bad_shapes_break_the_kernel_contract():
    """Kernels assert; F.matmul is where a user's bad shapes get their ValueError."""
    with pytest.raises(AssertionError, match="inner"):
        nb.matmul(np.zeros((2, 3)), np.zeros((4, 2)))
    with pytest.raises(AssertionError, match="scalar"):
        nb.matmul(np.float32(2), np.zeros(3))
    mv.use("numba")
    with pytest.raises(ValueError, match=r"inner dimensions differ, a has shape \(2, 3\) and b has shape \(4, 2\)"):
        F.matmul(mv.tensor(np.zeros((2, 3))), mv.tensor(np.zeros((4, 2))))
    with pytest.raises(ValueError, match=r"batch axes of a \(2,\) and b \(3,\) do not broadcast"):
        F.matmul(mv.tensor(np.zeros((2, 2, 3))), mv.tensor(np.zeros((3, 3, 2))))
    with pytest.raises(ValueError, match="at least 1-D"):
        F.matmul(mv.tensor(np.float32(2)), mv.tensor(np.zeros(3)))
