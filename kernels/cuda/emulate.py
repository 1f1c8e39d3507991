"""Run minivl's CUDA kernels on the CPU: the same ``.cu`` sources, built as host C++.

For machines without a GPU -- a student's laptop, CI. ``emulate.cuh`` turns
each CUDA thread into a fiber and each ``__syncthreads()`` into a yield (see
its header), a C++ compiler builds every kernel file against it, and inside
``with on_cpu():`` the wrappers of ``minivl.kernels.cuda`` take and return
NumPy arrays and launch the emulated kernels::

    import numpy as np
    from minivl.kernels import cuda
    from minivl.kernels.cuda import emulate

    with emulate.on_cpu():
        y = cuda.softmax_forward(np.random.rand(4, 100).astype(np.float32))

It is thousands of times slower than a GPU: for checking kernels on small
shapes, not for training. On top of running the kernels it checks what a GPU
would let pass silently: a launch whose arguments differ from the kernel's
parameters in size or kind, a non-contiguous array argument, a write outside
an output array (the wrappers' allocations are fenced), a barrier that not
every thread reaches. Needs a C++17 compiler with ``_Float16`` (g++ 12+, or
clang 15+) and ``<ucontext.h>`` (Linux, macOS); ``CXX`` picks the compiler.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.resources
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from minivl.kernels.cuda import loader

CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wextra", "-Wno-unknown-pragmas")
_FENCE_BYTE = 0xA5
_FENCE_BYTES = 256


def available() -> bool:
    """True when a C++ compiler is on the PATH of a POSIX machine."""
    return os.name == "posix" and shutil.which(CXX) is not None


def _source_dir() -> Path:
    folder = Path(str(importlib.resources.files("minivl.kernels.cuda")))
    if not (folder / "emulate.cuh").is_file():
        raise RuntimeError(f"emulation needs the kernel sources on disk, not found under {folder}")
    return folder


def _translation_unit() -> str:
    """C++ that includes every kernel file and registers each loader name as 'file:name'."""
    lines = ['#include "emulate.cuh"', *(f'#include "{f}"' for f in loader.NAME_EXPRESSIONS)]
    lines += ["namespace {", "const bool registered = [] {"]
    for filename, names in loader.NAME_EXPRESSIONS.items():
        lines += [f'    emu::add("{filename}:{name}", &{name});' for name in names]
    lines += ["    return true;", "}();", "}  // namespace", "MINIVL_EMULATE_ENTRY", ""]
    return "\n".join(lines)


@functools.cache
def build() -> ctypes.CDLL:
    """Compile every kernel file for the host as one library (cached on disk by content)."""
    folder = _source_dir()
    unit = _translation_unit()
    digest = hashlib.sha256()
    for part in (unit, " ".join((CXX, *CXXFLAGS))):
        digest.update(part.encode())
    for name in ("emulate.cuh", "common.cuh", *loader.NAME_EXPRESSIONS):
        digest.update((folder / name).read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minivl" / "emulate"
    cache.mkdir(parents=True, exist_ok=True)
    library = cache / f"kernels-{digest.hexdigest()[:16]}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            source = Path(tmp) / "kernels.cpp"
            source.write_text(unit)
            target = Path(tmp) / library.name
            result = subprocess.run(
                [CXX, *CXXFLAGS, "-I", str(folder), str(source), "-o", str(target)],
                capture_output=True, text=True,
            )
            if result.returncode:
                raise RuntimeError(f"{CXX} could not build the kernels for emulation:\n{result.stderr}")
            os.replace(target, library)  # atomic: parallel test workers may race here
    lib = ctypes.CDLL(str(library))
    lib.emulate_launch.restype = ctypes.c_int
    return lib


class _FencedNumpy:
    """NumPy, except that arrays made by ``empty``/``zeros`` sit between fence bytes.

    ``empty`` fills float arrays with NaN, so an output element a kernel forgets
    to write shows up in the comparison; ``check()`` raises if a fence changed.
    """

    __name__ = "numpy"
    ndarray = np.ndarray

    def __init__(self):
        self._fenced: list[tuple[np.ndarray, int, int]] = []

    def __getattr__(self, name):
        return getattr(np, name)

    def empty(self, shape, dtype=np.float64):
        dtype = np.dtype(dtype)
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = np.full(nbytes + 2 * _FENCE_BYTES + 16, _FENCE_BYTE, dtype=np.uint8)
        start = _FENCE_BYTES + (-raw.ctypes.data) % 16  # 16-byte aligned, like a CUDA allocation
        array = raw[start:start + nbytes].view(dtype).reshape(shape)
        if dtype.kind == "f":
            array[...] = np.nan
        self._fenced.append((raw, start, start + nbytes))
        return array

    def empty_like(self, a):
        return self.empty(a.shape, a.dtype)

    def zeros(self, shape, dtype=np.float64):
        array = self.empty(shape, dtype)
        array[...] = 0
        return array

    def check(self, kernel: str) -> None:
        for raw, start, stop in self._fenced:
            if (raw[:start] != _FENCE_BYTE).any() or (raw[stop:] != _FENCE_BYTE).any():
                raise AssertionError(f"{kernel} wrote outside an array it was given")


class _Kernel:
    """A callable with the ``RawKernel`` call signature that runs the host build."""

    def __init__(self, library: ctypes.CDLL, filename: str, name: str, xp: _FencedNumpy):
        self.library, self.key, self.name, self.xp = library, f"{filename}:{name}", name, xp

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem:
            raise ValueError("the emulator does not model dynamic shared memory")
        values, kinds, sizes = [], [], []
        for i, arg in enumerate(args):
            if isinstance(arg, np.ndarray):
                if not arg.flags.c_contiguous:
                    raise ValueError(f"{self.name}: argument {i} is a non-contiguous array")
                value, kind = ctypes.c_void_p(arg.ctypes.data), "p"
            elif isinstance(arg, np.generic):
                value = ctypes.create_string_buffer(arg.tobytes(), arg.nbytes)
                kind = "f" if arg.dtype.kind == "f" else "i"
            else:
                raise TypeError(
                    f"{self.name}: argument {i} is a Python {type(arg).__name__}; pass a NumPy scalar so "
                    "the C type is explicit (CuPy would guess it)"
                )
            values.append(value)
            kinds.append(kind)
            sizes.append(ctypes.sizeof(value) if kind == "p" else arg.nbytes)
        n = len(values)
        params = (ctypes.c_void_p * n)(*(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values))
        dims = [tuple(d) + (1,) * (3 - len(d)) for d in (grid, block)]
        message = ctypes.create_string_buffer(512)
        status = self.library.emulate_launch(
            self.key.encode(), (ctypes.c_uint * 3)(*dims[0]), (ctypes.c_uint * 3)(*dims[1]), params,
            (ctypes.c_longlong * n)(*sizes), "".join(kinds).encode(), n, message, len(message),
        )
        if status:
            raise RuntimeError(f"{self.name}: {message.value.decode()}")
        self.xp.check(self.name)


@contextlib.contextmanager
def on_cpu():
    """Within the block, ``minivl.kernels.cuda`` runs on NumPy arrays via the emulator."""
    xp = _FencedNumpy()

    def get_function(filename, name):
        if name not in loader.NAME_EXPRESSIONS.get(filename, ()):
            raise KeyError(f"{name!r} is not a kernel listed for {filename!r} in NAME_EXPRESSIONS")
        return _Kernel(build(), filename, name, xp)

    swaps = {
        "xp": lambda: xp,
        "get_function": get_function,
        "data_ptr": lambda array: array.ctypes.data,
        "compute_capability": lambda: 80,
    }
    saved = {name: getattr(loader, name) for name in swaps}
    for name, fn in swaps.items():
        setattr(loader, name, fn)
    try:
        yield xp
    finally:
        for name, fn in saved.items():
            setattr(loader, name, fn)
