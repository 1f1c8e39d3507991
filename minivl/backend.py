"""Which kernel implementation runs: ``numpy`` (the reference), ``numba`` or ``cuda``.

A ``Backend`` is one object that lists every low-level op the autograd layer
needs, as fields (MiniTorch's ``TensorBackend``). Each of the three backends is
built once from the ops its package exports:

* ``numpy`` from ``kernels/reference.py``, the spec, which supplies every op;
* ``numba`` from ``kernels/numba/__init__.py::KERNELS``;
* ``cuda``  from ``kernels/cuda/__init__.py::KERNELS``.

An op a backend does not export is filled in from the reference when the
backend is built, and the ``Kernel`` that wraps it says so (``source``), so
``report()`` shows who served each op (``attention_mask``, the allowed-pairs
helper of the composed attention path, is the reference's on every backend,
built with the input's array module). A ``Function`` asks for the backend of
its input array, ``for_array(x).softmax_forward(x)``:

* CuPy arrays always go to the ``cuda`` backend;
* anything else goes to the active backend, chosen with ``minivl.use("numba")``
  or the environment variable ``MINIVL_BACKEND``; when that is ``cuda``, a
  NumPy array goes to ``numba`` instead (the CUDA kernels take device arrays).
  Under ``emulate.on_cpu()`` the ``cuda`` backend runs the same ``.cu``
  sources on NumPy arrays.

This module imports no autograd: it sits between ``minivl.functional`` and the
kernels, which know nothing of ``Tensor``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable

import numpy as np

from minivl.kernels import reference

BACKENDS = ("numpy", "numba", "cuda")
_PACKAGES = {"numba": "minivl.kernels.numba", "cuda": "minivl.kernels.cuda"}


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One op of one backend: calling it runs ``fn`` and records who served ``op``."""

    op: str
    source: str  # the backend whose code runs: its own name, or "numpy" for a fallback
    fn: Callable

    def __call__(self, *args, **kwargs):
        _served[self.op] = self.source
        return self.fn(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Backend:
    """Every kernel op a backend supplies; signatures and semantics are those of
    ``kernels/reference.py`` (raw arrays in, raw arrays out, no autograd)."""

    name: str
    matmul: Kernel
    softmax_forward: Kernel
    softmax_backward: Kernel
    log_softmax_forward: Kernel
    log_softmax_backward: Kernel
    layer_norm_forward: Kernel
    layer_norm_backward: Kernel
    gelu_forward: Kernel
    gelu_backward: Kernel
    bias_gelu_forward: Kernel  # GELU(x + bias): a Linear's bias and the activation in one pass
    bias_gelu_backward: Kernel
    attention_forward: Kernel
    attention_backward: Kernel
    attention_mask: Kernel  # the (B, 1, Nq, Nk) allowed pairs, for the composed (non-fused) path

    @classmethod
    def ops(cls) -> tuple[str, ...]:
        """The names of every op, in the order the fields list them."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "name")

    @classmethod
    def build(cls, name: str, table: dict[str, Callable]) -> Backend:
        """The backend ``name`` from its ``{op: function}`` exports; missing ops run the reference."""
        unknown = sorted(set(table) - set(cls.ops()))
        if unknown:
            raise ValueError(f"backend {name!r} exports ops {unknown} that Backend does not list")
        kernels = {
            op: Kernel(op, name, table[op]) if op in table else Kernel(op, "numpy", getattr(reference, op))
            for op in cls.ops()
        }
        return cls(name=name, **kernels)

    def fallbacks(self) -> tuple[str, ...]:
        """The ops this backend leaves to the NumPy reference."""
        return tuple(op for op in self.ops() if getattr(self, op).source != self.name)


def _load(name: str) -> Backend:
    """The backend ``name``, built on first use (numba compiles each kernel on its first call)."""
    if name not in _backends:
        if name == "numpy":
            table = {op: getattr(reference, op) for op in Backend.ops()}
        else:
            table = importlib.import_module(_PACKAGES[name]).KERNELS
        _backends[name] = Backend.build(name, table)
    return _backends[name]


_backends: dict[str, Backend] = {}
_served: dict[str, str] = {}
_active = "numpy"


def use(name: str) -> None:
    """Make ``name`` ('numpy', 'numba' or 'cuda') the active kernel backend."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _load(name)
    _active = name
    _served.clear()


def current() -> str:
    """The name of the active backend."""
    return _active


def get(name: str | None = None) -> Backend:
    """The ``Backend`` object called ``name`` (default: the active one)."""
    if name is not None and name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return _load(_active if name is None else name)


def for_array(x) -> Backend:
    """The backend that serves ``x``: ``cuda`` for a CuPy array; for a NumPy array the active
    one, except that under ``use("cuda")`` a host array (a model not yet moved, an evaluation
    on the CPU) is served by ``numba``: the CUDA kernels take device arrays only. Under
    ``emulate.on_cpu()`` NumPy arrays are the device's, and go to ``cuda``."""
    if not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__"):
        return _load("cuda")
    if _active == "cuda" and not _emulating():
        return _load("numba")
    return _load(_active)


def _emulating() -> bool:
    from minivl.kernels.cuda import emulate

    return emulate.active()


def report() -> dict[str, str]:
    """``{op: backend}`` for every kernel called since the last ``use()``."""
    return dict(_served)


def available() -> dict[str, bool]:
    """Which backends can run on this machine."""
    out = {"numpy": True}
    try:
        _load("numba")
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
