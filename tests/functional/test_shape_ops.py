"""Shape and indexing ops: values against NumPy, gradients against finite differences."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivl as mv
from minivl import functional as F
from minivl.testing import gradcheck


def leaf(a):
    return mv.tensor(np.array(a, dtype=np.float64), requires_grad=True)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), seed=st.integers(0, 9))
def test_reshape_transpose_roundtrip(shape, seed):
    x = randn(*shape, seed=seed)
    perm = tuple(np.random.default_rng(seed).permutation(len(shape)))
    np.testing.assert_array_equal(F.transpose(leaf(x), perm).data, x.transpose(perm))
    np.testing.assert_array_equal(F.reshape(leaf(x), (-1,)).data, x.reshape(-1))
    gradcheck(lambda t: F.transpose(t, perm).reshape(-1) * 1.0, leaf(x))


def test_expand_squeeze_unsqueeze():
    x = randn(3, 1)
    np.testing.assert_array_equal(F.expand(leaf(x), (2, 3, 4)).data, np.broadcast_to(x, (2, 3, 4)))
    gradcheck(lambda t: F.expand(t, (2, 3, 4)), leaf(x))
    assert F.squeeze(leaf(x)).shape == (3,)
    assert F.unsqueeze(leaf(x), 0).shape == (1, 3, 1)
    assert F.unsqueeze(leaf(x), -1).shape == (3, 1, 1)
    gradcheck(lambda t: F.unsqueeze(F.squeeze(t, 1), 0), leaf(x))
    with pytest.raises(ValueError, match="squeeze axis 0"):
        F.squeeze(leaf(x), 0)
    with pytest.raises(ValueError, match="cannot expand"):
        F.expand(leaf(x), (2, 3))


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), 1),
        (Ellipsis, slice(0, 3, 2)),
        (np.array([0, 2, 0]),),  # repeated rows: gradients must add up
        (np.array([[1, 0], [2, 2]]), slice(1, None)),
        (np.array([0, 1, 1]), np.array([2, 0, 0])),
        (np.array([True, False, True]),),
        (None, 0),
    ],
)
def test_indexing(index):
    x = randn(3, 4)
    np.testing.assert_array_equal(F.getitem(leaf(x), index).data, x[index])
    gradcheck(lambda t: t[index], leaf(x))


def test_gather_picks_along_axis():
    x = randn(4, 5)
    idx = np.array([[0], [4], [2], [2]])
    np.testing.assert_array_equal(F.gather(leaf(x), idx, axis=1).data, np.take_along_axis(x, idx, 1))
    gradcheck(lambda t: F.gather(t, idx, axis=1), leaf(x))


def test_concat_stack_split():
    a, b = randn(2, 3), randn(2, 1, seed=1)
    np.testing.assert_array_equal(F.concat([leaf(a), leaf(b)], axis=1).data, np.concatenate([a, b], 1))
    gradcheck(lambda s, t: F.concat([s, t], axis=-1), leaf(a), leaf(b))
    gradcheck(lambda s, t: F.stack([s, t * 2.0], axis=1), leaf(a), leaf(a + 1))
    parts = F.split(leaf(randn(6, 2)), [1, 2, 3], axis=0)
    assert [p.shape for p in parts] == [(1, 2), (2, 2), (3, 2)]
    gradcheck(lambda t: F.split(t, 3, axis=0)[1] * 3.0, leaf(randn(6, 2)))
    with pytest.raises(ValueError, match="differ off that axis"):
        F.concat([leaf(a), leaf(randn(3, 3))], axis=1)
    with pytest.raises(ValueError, match="do not add up"):
        F.split(leaf(a), [1, 1], axis=1)


def test_embedding_scatter_adds_repeated_ids():
    w = randn(5, 3)
    ids = np.array([[1, 1, 4], [0, 1, 1]])
    out = F.embedding(ids, leaf(w))
    np.testing.assert_array_equal(out.data, w[ids])
    gradcheck(lambda t: F.embedding(ids, t), leaf(w))
    t = leaf(w)
    F.embedding(ids, t).sum().backward()
    np.testing.assert_array_equal(t.grad[:, 0], [1, 4, 0, 0, 1])  # id 1 used four times
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        F.embedding(np.array([5]), leaf(w))
    t = leaf(w)
    F.embedding(np.zeros((2, 0), dtype=np.int64), t).sum().backward()  # no ids: a zero gradient
    np.testing.assert_array_equal(t.grad, np.zeros_like(w))


@given(ids=hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(0, 6)), seed=st.integers(0, 9))
def test_embedding_gradient_is_numpys_add_at(ids, seed):
    w, g = randn(7, 4, seed=seed), randn(len(ids), 4, seed=seed + 1)
    t = leaf(w)
    (F.embedding(ids, t) * mv.tensor(g)).sum().backward()
    expected = np.zeros_like(w)
    np.add.at(expected, ids, g)
    np.testing.assert_allclose(t.grad, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="integers"):
        F.embedding(np.array([0.5]), leaf(w))


@given(data=st.data())
def test_matmul_broadcasting(data):
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    m, k, n = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)))
    a, b = randn(*batch[0], m, k), randn(*batch[1], k, n, seed=1)
    np.testing.assert_allclose(F.matmul(leaf(a), leaf(b)).data, a @ b, rtol=1e-12)
    gradcheck(F.matmul, leaf(a), leaf(b))


@pytest.mark.parametrize("sa,sb", [((3,), (3, 2)), ((2, 3), (3,)), ((3,), (3,)), ((2, 4, 3), (3,))])
def test_matmul_vectors(sa, sb):
    a, b = randn(*sa), randn(*sb, seed=1)
    np.testing.assert_allclose(F.matmul(leaf(a), leaf(b)).data, a @ b, rtol=1e-12)
    gradcheck(F.matmul, leaf(a), leaf(b))


def test_matmul_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.matmul(leaf(randn(2, 3)), leaf(randn(4, 5)))


def test_linear():
    x, w, b = randn(2, 3, 4), randn(5, 4, seed=1), randn(5, seed=2)
    np.testing.assert_allclose(F.linear(leaf(x), leaf(w), leaf(b)).data, x @ w.T + b, rtol=1e-12)
    gradcheck(F.linear, leaf(x), leaf(w), leaf(b))
    gradcheck(F.linear, leaf(x), leaf(w))  # no bias
    gradcheck(F.linear, leaf(randn(4)), leaf(w), leaf(b))  # one vector
    with pytest.raises(ValueError, match="features"):
        F.linear(leaf(x), leaf(randn(5, 3)))
    with pytest.raises(ValueError, match="bias"):
        F.linear(leaf(x), leaf(w), leaf(randn(4)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_linear_node_equals_matmul_plus_bias_in_float32(backend):
    mv.use(backend)
    x, w, b = (randn(3, 7, 6), randn(5, 6, seed=1), randn(5, seed=2))
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    fused = [mv.tensor(a, requires_grad=True) for a in (x, w, b)]
    composed = [mv.tensor(a, requires_grad=True) for a in (x, w, b)]
    y1 = F.linear(*fused)
    y2 = F.matmul(composed[0], composed[1].T) + composed[2]
    assert y1.dtype == np.float32
    np.testing.assert_allclose(y1.data, y2.data, rtol=1e-5, atol=1e-6)
    (y1 * y1).sum().backward()
    (y2 * y2).sum().backward()
    for a, c in zip(fused, composed):
        np.testing.assert_allclose(a.grad, c.grad, rtol=1e-4, atol=1e-5)
