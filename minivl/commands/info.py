"""``minivl info``: library versions, which backends run here, whether a GPU is visible."""

from __future__ import annotations

import importlib
import platform


def _version(name):
    try:
        return importlib.import_module(name).__version__
    except Exception:  # noqa: BLE001 - absent or broken: report it, don't crash
        return "not installed"


def info() -> dict:
    from minivl import __version__, backend
    from minivl.kernels import cuda as cuda_kernels

    gpu = "none"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if n:
            gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode() + f" (x{n})"
    except Exception:  # noqa: BLE001
        pass
    del cuda_kernels
    return {
        "minivl": __version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "cupy": _version("cupy"),
        "active backend": backend.current(),
        "backends available": ", ".join(k for k, ok in backend.available().items() if ok),
        "gpu": gpu,
    }


def _run(args):
    for k, v in info().items():
        print(f"{k:>20}: {v}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("info", help="versions, available backends, GPU")
    p.set_defaults(func=_run)
