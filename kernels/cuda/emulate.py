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
every thread reaches. What a GPU leaves to chance it makes likely to fail:
shared memory starts as NaN in every block and the threads of a block run in
a shuffled order between barriers (``seed``; see ``emulate.cuh``), so a
missing ``__syncthreads()`` or a read of shared memory nobody wrote shows up
as NaN in the output.

A second build, with the address and alignment sanitizers, stops the process
at a misaligned ``float4`` load or an access outside a shared array, as the GPU
would fault. It is chosen by ``MINIVL_EMULATE_SANITIZE=1`` and needs the
sanitizer runtime loaded first, so it runs in its own process:
``run_sanitized(code)`` starts one (``tests/kernels/test_cuda_emulated.py``).

Needs a C++17 compiler with ``_Float16`` (g++ 12+, or clang 15+),
``<ucontext.h>`` (Linux, macOS) and ``nm`` (binutils, which finds the shared
variables); ``CXX`` picks the compiler.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.resources
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from minivl.kernels.cuda import loader

CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wextra", "-Wno-unknown-pragmas")
SANITIZE_FLAGS = ("-fsanitize=address,alignment", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")
SANITIZE_ENV = "MINIVL_EMULATE_SANITIZE"
_NOT_SHARED = re.compile(r"N?K?(3emu|St|S[a-z])")  # statics in functions of namespace emu or std
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


def _translation_unit(kernels: dict[str, tuple[str, ...]]) -> str:
    """C++ that includes each kernel file and registers each listed name as 'file:name'."""
    lines = ['#include "emulate.cuh"', *(f'#include "{f}"' for f in kernels)]
    lines += ["namespace {", "const bool registered = [] {"]
    for filename, names in kernels.items():
        lines += [f'    emu::add("{filename}:{name}", &{name});' for name in names]
    lines += ["    return true;", "}();", "}  // namespace", "MINIVL_EMULATE_ENTRY", ""]
    return "\n".join(lines)


def sanitizer_loaded() -> bool:
    """True when this process started with the address sanitizer's runtime (LD_PRELOAD)."""
    return hasattr(ctypes.CDLL(None), "__asan_init")


def _wants_sanitizer(sanitize: bool | None) -> bool:
    return os.environ.get(SANITIZE_ENV) == "1" if sanitize is None else sanitize


def _compile(folder: Path, kernels: dict[str, tuple[str, ...]], sanitize: bool) -> ctypes.CDLL:
    """Build ``kernels`` (files under ``folder``) with emulate.cuh as one library, cached by content."""
    if sanitize and not sanitizer_loaded():
        raise RuntimeError(
            "the sanitizer build needs its runtime loaded before Python starts: run it through "
            "emulate.run_sanitized(), or set LD_PRELOAD=$(g++ -print-file-name=libasan.so)"
        )
    unit = _translation_unit(kernels)
    flags = (*CXXFLAGS, *(SANITIZE_FLAGS if sanitize else ()))
    digest = hashlib.sha256()
    for part in (unit, " ".join((CXX, *flags))):
        digest.update(part.encode())
    kernel_dir = _source_dir()
    for path in (kernel_dir / "emulate.cuh", kernel_dir / "common.cuh", *(folder / f for f in kernels)):
        digest.update(path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minivl" / "emulate"
    cache.mkdir(parents=True, exist_ok=True)
    library = cache / f"kernels-{digest.hexdigest()[:16]}{'-sanitized' if sanitize else ''}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            source = Path(tmp) / "kernels.cpp"
            source.write_text(unit)
            target = Path(tmp) / library.name
            result = subprocess.run(
                [CXX, *flags, "-I", str(kernel_dir), "-I", str(folder), str(source), "-o", str(target)],
                capture_output=True, text=True,
            )
            if result.returncode:
                raise RuntimeError(f"{CXX} could not build the kernels for emulation:\n{result.stderr}")
            os.replace(target, library)  # atomic: parallel test workers may race here
    lib = ctypes.CDLL(str(library))
    lib.emulate_launch.restype = ctypes.c_int
    lib.emulate_configure.argtypes = (ctypes.c_longlong, ctypes.c_int)
    lib.emulate_add_shared.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    for address, size in _shared_variables(library, lib):
        lib.emulate_add_shared(address, size)
    return lib


def _shared_variables(path: Path, lib: ctypes.CDLL) -> list[tuple[int, int]]:
    """(address, bytes) of every ``__shared__`` variable of a loaded build.

    In the host build ``__shared__`` is ``static``: the variables are the
    function-local statics of the kernel code, whose mangled names start with
    ``_ZZ`` (g++ ignores a section attribute on the statics of templates, so a
    linker section cannot gather them). The emulator's own statics (namespace
    ``emu``) and the standard library's are left alone."""
    result = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"nm could not read {path}: {result.stderr}")
    symbols = {}  # mangled name -> (kind, address in the file, bytes)
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = (parts[2], int(parts[0], 16), int(parts[1], 16))
    base = ctypes.cast(lib.emulate_launch, ctypes.c_void_p).value - symbols["emulate_launch"][1]
    return [(base + address, size) for name, (kind, address, size) in symbols.items()
            if kind in "bBdDuV" and name.startswith("_ZZ") and not _NOT_SHARED.match(name.lstrip("_Z"))]


@functools.cache
def build(sanitize: bool | None = None) -> ctypes.CDLL:
    """Every kernel file of ``loader.NAME_EXPRESSIONS`` for the host, as one library.

    ``sanitize`` (default: the ``MINIVL_EMULATE_SANITIZE`` variable) picks the
    sanitizer build, cached apart from the plain one."""
    return _compile(_source_dir(), loader.NAME_EXPRESSIONS, _wants_sanitizer(sanitize))


@functools.cache
def build_file(path: str | Path, names: tuple[str, ...], sanitize: bool | None = None) -> ctypes.CDLL:
    """One more ``.cu`` file (its kernels ``names``), e.g. a test's planted bug."""
    path = Path(path)
    return _compile(path.parent, {path.name: tuple(names)}, _wants_sanitizer(sanitize))


def kernels_of(path: str | Path, names: tuple[str, ...], seed: int = 0, fill_shared: bool = True,
               sanitize: bool | None = None) -> dict:
    """``{name: kernel}`` for the kernels of one ``.cu`` file, each called like a ``RawKernel``."""
    library = build_file(Path(path), tuple(names), sanitize)
    xp = _FencedNumpy()
    return {name: _Kernel(library, Path(path).name, name, xp, seed, fill_shared) for name in names}


def run_sanitized(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a new process where the emulator uses its sanitizer build."""
    runtime = subprocess.run([CXX, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, LD_PRELOAD=runtime, **{SANITIZE_ENV: "1"},
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)


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

    def __init__(self, library: ctypes.CDLL, filename: str, name: str, xp: _FencedNumpy, seed: int,
                 fill_shared: bool):
        self.library, self.key, self.name, self.xp = library, f"{filename}:{name}", name, xp
        self.seed, self.fill_shared = seed, fill_shared

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
        self.library.emulate_configure(self.seed, int(self.fill_shared))
        status = self.library.emulate_launch(
            self.key.encode(), (ctypes.c_uint * 3)(*dims[0]), (ctypes.c_uint * 3)(*dims[1]), params,
            (ctypes.c_longlong * n)(*sizes), "".join(kinds).encode(), n, message, len(message),
        )
        if status:
            raise RuntimeError(f"{self.name}: {message.value.decode()}")
        self.xp.check(self.name)


_depth = 0  # how many on_cpu() blocks are open


def active() -> bool:
    """True inside ``on_cpu()``: "cuda" arrays are then NumPy arrays (``minivl.device``)."""
    return _depth > 0


@contextlib.contextmanager
def on_cpu(seed: int = 0, fill_shared: bool = True, sanitize: bool | None = None):
    """Within the block, ``minivl.kernels.cuda`` runs on NumPy arrays via the emulator.

    ``seed`` orders the threads between barriers (negative: in index order);
    ``fill_shared`` starts every block's shared memory as NaN; ``sanitize``
    (default: ``MINIVL_EMULATE_SANITIZE``) picks the sanitizer build."""
    xp = _FencedNumpy()

    def get_function(filename, name):
        if name not in loader.NAME_EXPRESSIONS.get(filename, ()):
            raise KeyError(f"{name!r} is not a kernel listed for {filename!r} in NAME_EXPRESSIONS")
        return _Kernel(build(sanitize), filename, name, xp, seed, fill_shared)

    swaps = {
        "xp": lambda: xp,
        "get_function": get_function,
        "data_ptr": lambda array: array.ctypes.data,
        "compute_capability": lambda: 80,
    }
    saved = {name: getattr(loader, name) for name in swaps}
    global _depth
    for name, fn in swaps.items():
        setattr(loader, name, fn)
    _depth += 1
    try:
        yield xp
    finally:
        _depth -= 1
        for name, fn in saved.items():
            setattr(loader, name, fn)
