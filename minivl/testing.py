"""Tools for checking gradients and comparing arrays (used by the tests, and by
students checking their own code).

``gradcheck`` follows CS231n's recipe: float64, centred differences, and the
relative error ``|a - n| / max(1e-8, |a| + |n|)``; about 1e-7 is right, above
1e-2 is wrong.
"""

from __future__ import annotations

import numpy as np

from minivl.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def numerical_grad(fn, inputs, index, eps=1e-6, seed_grad=None):
    """Central differences of ``sum(fn(*inputs) * seed_grad)`` w.r.t. ``inputs[index]``."""
    x = inputs[index].data
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    with no_grad():
        for _ in it:
            i = it.multi_index
            old = x[i]
            x[i] = old + eps
            plus = _scalar(fn(*inputs), seed_grad)
            x[i] = old - eps
            minus = _scalar(fn(*inputs), seed_grad)
            x[i] = old
            grad[i] = (plus - minus) / (2 * eps)
    return grad


def _scalar(out, seed_grad):
    d = out.data if isinstance(out, Tensor) else np.asarray(out)
    return float(np.sum(d * seed_grad)) if seed_grad is not None else float(np.sum(d))


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Compare autograd's gradient of ``fn`` with central differences.

    ``inputs`` are float64 tensors; those with ``requires_grad=True`` are
    checked. The output is contracted with a fixed random tensor (so every
    output element matters, not just their sum). Raises ``GradcheckError``
    naming the input, the worst index and both values; returns True otherwise.
    """
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {i} is a {type(t).__name__}, expected a minivl Tensor")
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} must be float64 for finite differences, got {t.dtype}")
    out = fn(*inputs)
    rng = np.random.default_rng(seed)
    seed_grad = rng.standard_normal(out.shape).astype(out.dtype)
    for t in inputs:
        t.grad = None
    out.backward(seed_grad)
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = t.grad if t.grad is not None else np.zeros_like(t.data)
        numeric = numerical_grad(fn, inputs, i, eps, seed_grad)
        err = np.abs(analytic - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if np.any(bad):
            worst = np.unravel_index(np.argmax(err - rtol * np.abs(numeric)), err.shape)
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {t.shape}) at index {tuple(int(w) for w in worst)}: "
                f"analytic {analytic[worst]:.8g}, numerical {numeric[worst]:.8g} "
                f"({int(bad.sum())} of {bad.size} elements off)"
            )
    return True


def relative_error(a, b):
    """CS231n's ``max |a - b| / max(1e-8, |a| + |b|)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))) if a.size else 0.0


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, name="value"):
    """``np.testing.assert_allclose`` that accepts Tensors and reports the worst element."""
    a = actual.data if isinstance(actual, Tensor) else np.asarray(actual)
    e = expected.data if isinstance(expected, Tensor) else np.asarray(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected {e.shape}")
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=name)


def tolerances(dtype):
    """(rtol, atol) we expect of float32 and float64 results that took different paths."""
    return (1e-4, 1e-5) if np.dtype(dtype) == np.float32 else (1e-9, 1e-11)


LAYOUTS = ("contiguous", "transposed", "strided")


def with_layout(x, kind):
    """The same values as ``x`` in another memory layout, to catch layout bugs
    in fast kernels (MiniTorch's habit): ``"transposed"`` is a Fortran-order
    view of the last two axes, ``"strided"`` a view with a stride of 2 along
    the last axis, ``"contiguous"`` ``x`` itself."""
    if kind == "transposed":
        return np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)
    if kind == "strided":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if kind != "contiguous":
        raise ValueError(f"kind must be one of {LAYOUTS}, got {kind!r}")
    return x
