"""Which kernel implementation runs: ``numpy`` (the reference), ``numba`` or ``cuda``.

Autograd ``Function``s never call a kernel directly; they call
``backend.kernel("softmax_forward")(x)`` and this module picks the
implementation (MiniTorch's "one backend object" idea):

* CuPy arrays always go to the ``cuda`` kernels;
* otherwise the active backend, chosen with ``minivl.use("numba")`` or the
  environment variable ``MINIVL_BACKEND``, serves the op;
* a kernel a backend has not written falls back to the NumPy reference, and
  ``report()`` says which implementation served each op.
"""

from __future__ import annotations

import os

import numpy as np

from minivl.kernels import reference

BACKENDS = ("numpy", "numba", "cuda")
_active = "numpy"
_tables: dict[str, dict] = {"numpy": {}}
_served: dict[str, str] = {}


def _load_table(name):
    if name not in _tables:
        if name == "numba":
            from minivl.kernels.numba import KERNELS
        elif name == "cuda":
            from minivl.kernels.cuda import KERNELS
        else:  # pragma: no cover - guarded by use()
            raise ValueError(name)
        _tables[name] = dict(KERNELS)
    return _tables[name]


def use(name: str) -> None:
    """Make ``name`` ('numpy', 'numba' or 'cuda') the active kernel backend."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _load_table(name)
    _active = name
    _served.clear()


def current() -> str:
    """The name of the active backend."""
    return _active


def kernel(op: str, like=None):
    """The implementation of ``op`` for the active backend (or for ``like``'s device)."""
    name = _active
    if like is not None and not isinstance(like, np.ndarray) and hasattr(like, "__cuda_array_interface__"):
        name = "cuda"
    fn = _load_table(name).get(op) if name != "numpy" else None
    if fn is None:
        fn, name = getattr(reference, op), "numpy"
    _served[op] = name
    return fn


def report() -> dict[str, str]:
    """``{op: backend}`` for every kernel called since the last ``use()``."""
    return dict(_served)


def available() -> dict[str, bool]:
    """Which backends can run on this machine."""
    out = {"numpy": True}
    try:
        _load_table("numba")
        out["numba"] = True
    except Exception:  # noqa: BLE001 - any import failure means "not here"
        out["numba"] = False
    try:
        from minivl.kernels import cuda

        out["cuda"] = bool(cuda.available())
    except Exception:  # noqa: BLE001
        out["cuda"] = False
    return out


_env = os.environ.get("MINIVL_BACKEND")
if _env:
    use(_env)
