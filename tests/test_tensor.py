"""The autograd engine itself: graph traversal, accumulation, no_grad, dtype
rules and the errors students will meet."""

from __future__ import annotations

import numpy as np
import pytest

import minivl as mv
from minivl import functional as F


def test_micrograd_example_known_answer():
    # d/da of (a*b + b**3) at a=2, b=-3 is b = -3; d/db = a + 3 b^2 = 29
    a = mv.tensor(np.array(2.0), requires_grad=True)
    b = mv.tensor(np.array(-3.0), requires_grad=True)
    (a * b + b**3).backward()
    assert a.grad == pytest.approx(-3.0) and b.grad == pytest.approx(29.0)


def test_shared_subexpression_is_counted_once_per_use():
    # y = x*x + x: the diamond x -> (x*x, x) -> y needs a topological order
    x = mv.tensor(np.array([1.5, -2.0]), requires_grad=True)
    t = x * x
    (t + t * 3 + x).sum().backward()
    np.testing.assert_allclose(x.grad, 8 * x.data + 1)


def test_ten_thousand_node_chain_does_not_recurse():
    x = mv.tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001**10_000, rel=1e-9)


def test_gradients_accumulate_until_zeroed():
    x = mv.tensor(np.ones(3), requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, 5.0)
    x.zero_grad()
    assert x.grad is None


def test_detach_and_no_grad_cut_the_graph():
    x = mv.tensor(np.ones(2), requires_grad=True)
    with mv.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert mv.is_grad_enabled()  # restored after the block
    z = (x * 2).detach()
    assert not z.requires_grad
    w = (x * z).sum()
    w.backward()
    np.testing.assert_array_equal(x.grad, 2.0)


def test_retain_grad_on_intermediate():
    x = mv.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)


def test_dtype_rules():
    assert mv.tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert mv.tensor(np.zeros(2, dtype=np.float32)).dtype == np.float32
    assert mv.tensor(1.5).dtype == np.float32
    assert mv.tensor([1, 2, 3]).dtype == np.float32
    assert mv.tensor(np.array([1, 2])).dtype.kind == "i"  # index arrays stay integer
    assert mv.tensor([True, False]).dtype == bool
    mixed = mv.tensor(np.ones(2, np.float32)) + mv.tensor(np.ones(2, np.float64))
    assert mixed.dtype == np.float64  # NumPy's promotion
    with pytest.raises(TypeError, match="floating-point"):
        mv.tensor(np.array([1, 2]), requires_grad=True)


def test_backward_errors_name_shapes():
    x = mv.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\)"):
        (x * 2).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        mv.tensor(np.ones(1)).backward()
    (x * 2).backward(np.ones((2, 3)))
    np.testing.assert_array_equal(x.grad, 2.0)


def test_operators_and_methods_match_functional():
    a = mv.tensor(np.array([[1.0, -2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal((1 - a).data, 1 - a.data)
    np.testing.assert_array_equal((2 / a).data, 2 / a.data)
    np.testing.assert_array_equal((-a).data, -a.data)
    np.testing.assert_array_equal((a @ a).data, a.data @ a.data)
    np.testing.assert_array_equal((a.data @ a).data, a.data @ a.data)
    np.testing.assert_array_equal(a.T.data, a.data.T)
    np.testing.assert_array_equal(a.reshape(4).data, a.data.reshape(4))
    np.testing.assert_array_equal(a.reshape((1, 4)).data, a.data.reshape(1, 4))
    np.testing.assert_array_equal(a.permute(1, 0).data, a.data.T)
    np.testing.assert_array_equal((a > 0), a.data > 0)
    np.testing.assert_allclose(a.softmax().data, F.softmax(a).data)
    assert a.sum().item() == 6.0 and a.mean(axis=0).shape == (2,)
    assert "tensor(" in repr(a) and "requires_grad" in repr(mv.tensor(1.0, requires_grad=True))


def test_astype_casts_gradient_back():
    x = mv.tensor(np.ones(3, np.float32), requires_grad=True)
    y = x.astype(np.float64)
    assert y.dtype == np.float64
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float32


def test_manual_seed_reproduces_init():
    from minivl import nn

    mv.manual_seed(5)
    a = nn.Linear(3, 4).weight.data.copy()
    mv.manual_seed(5)
    b = nn.Linear(3, 4).weight.data
    np.testing.assert_array_equal(a, b)


def test_gradcheck_catches_a_wrong_backward_and_names_the_index():
    from minivl.testing import GradcheckError, gradcheck

    class WrongSquare(mv.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved
            wrong = 2 * a
            wrong[1] += 0.5  # one element off
            return g * wrong

    x = mv.tensor(np.array([0.3, -1.2, 2.0]), requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0 .* index \(1,\)"):
        gradcheck(WrongSquare.apply, x)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * t, mv.tensor(np.ones(2, np.float32), requires_grad=True))
