"""Compile the ``.cu`` sources with NVRTC (through CuPy) and hand out kernels.

Each source is read as package data, ``#include "common.cuh"`` is pasted in
(NVRTC has no include path to find it), and the text becomes one
``cupy.RawModule`` built with the ``name_expressions`` listed below -- templates
exist in the compiled module only when named. Modules are compiled on first use
and cached for the life of the process (CuPy also caches the binary on disk).

CuPy is imported lazily: ``import minivl.kernels.cuda`` works on machines
without it, and only calling a kernel needs a GPU.

The Python wrappers reach CuPy only through ``xp()``, ``get_function()``,
``data_ptr()`` and ``compute_capability()``, so ``emulate.on_cpu()`` can swap
them for NumPy and a CPU emulation of the same kernels: the tests of
``tests/kernels/test_cuda_kernels.py`` run both ways, and the emulator's own
checks are in ``tests/kernels/test_cuda_emulated.py``.
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np

_SOFTMAX = ("softmax_forward", "log_softmax_forward", "softmax_backward", "log_softmax_backward")
_LAYER_NORM = (
    "layer_norm_forward", "layer_norm_backward_dx",
    "layer_norm_backward_params_partial", "layer_norm_backward_params_reduce",
)
# attention.cu's instantiations: padded head dim kD -> (query tile, key tile)
ATTENTION_TILES = {"forward": {64: (64, 32), 128: (32, 16)}, "backward": {64: (32, 32), 128: (16, 16)}}

# Every kernel the wrappers launch, by source file: the NVRTC name expressions.
# tests/kernels/test_cuda_compile.py checks each against what nvcc builds.
NAME_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "matmul.cu": (
        "sgemm1_naive", "sgemm2_coalesced", "sgemm3_shared_tiles", "sgemm4_blocktile_1d",
        "sgemm5_blocktile_2d",
        *(f"{k}<{v}>" for k in ("sgemm6_vectorized", "sgemm7_warptiling", "sgemm8_double_buffered")
          for v in ("true", "false")),
    ),
    "softmax.cu": tuple(f"{k}<{t}>" for k in _SOFTMAX for t in ("float", "double")),
    "layer_norm.cu": tuple(f"{k}<{t}>" for k in _LAYER_NORM for t in ("float", "double")),
    "gelu.cu": tuple(f"{k}<{t}>" for k in ("gelu_forward", "gelu_backward", "bias_gelu_forward",
                                            "bias_gelu_backward", "bias_grad_reduce") for t in ("float", "double")),
    "attention.cu": (
        "attention_backward_delta",
        *(f"attention_forward<{kd}, {q}, {k}>" for kd, (q, k) in ATTENTION_TILES["forward"].items()),
        *(f"{name}<{kd}, {q}, {k}>" for name in ("attention_backward_dkdv", "attention_backward_dq")
          for kd, (q, k) in ATTENTION_TILES["backward"].items()),
    ),
    "attention_ladder.cu": ("attention1_scores", "attention1_softmax", "attention1_values", "attention2_online"),
    "attention_mma.cu": tuple(
        f"attention_forward_mma<{bf16}, {d}>" for bf16 in ("false", "true") for d in (64, 128)
    ),
}

OPTIONS = ("-std=c++17",)
_COMMON_INCLUDE = '#include "common.cuh"'


def cupy():
    """The ``cupy`` module, imported on first use, with an error that says what to install."""
    try:
        import cupy as cp
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise ImportError(
            "minivl's CUDA kernels need CuPy and an NVIDIA GPU: pip install cupy-cuda13x "
            "(or the wheel matching your CUDA); without a GPU use minivl.use('numpy') or 'numba'"
        ) from err
    return cp


def available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        return cupy().cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device all mean "not here"
        return False


def xp():
    """The array module the wrappers allocate with (CuPy)."""
    return cupy()


def compute_capability() -> int:
    """The current device's compute capability as an int, e.g. 90 for an H100."""
    return int(cupy().cuda.Device().compute_capability)


def data_ptr(array) -> int:
    """The device address of an array's first element (alignment checks)."""
    return array.data.ptr


def source(filename: str) -> str:
    """The CUDA source of ``filename`` with ``common.cuh`` pasted in."""
    folder = importlib.resources.files("minivl.kernels.cuda")
    text = folder.joinpath(filename).read_text(encoding="utf-8")
    if _COMMON_INCLUDE in text:
        text = text.replace(_COMMON_INCLUDE, folder.joinpath("common.cuh").read_text(encoding="utf-8"))
    return text


@functools.cache
def module(filename: str):
    """The compiled ``cupy.RawModule`` of one source file (built once per process)."""
    return cupy().RawModule(
        code=source(filename), options=OPTIONS, name_expressions=list(NAME_EXPRESSIONS[filename])
    )


def get_function(filename: str, name: str):
    """The kernel ``name`` (a name expression, e.g. ``'softmax_forward<float>'``) of ``filename``."""
    if name not in NAME_EXPRESSIONS.get(filename, ()):
        raise KeyError(f"{name!r} is not a kernel listed for {filename!r} in NAME_EXPRESSIONS")
    return module(filename).get_function(name)


# --------------------------------------------------------------------------- argument checks


def ctype(dtype) -> str:
    """The C++ type name of a float dtype, for template name expressions."""
    return {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]


def device_array(x, name: str, dtypes=(np.float32, np.float64), min_ndim: int = 0):
    """``x`` as a C-contiguous device array, after checking its type, dtype and rank."""
    module_xp = xp()
    if not isinstance(x, module_xp.ndarray):
        raise TypeError(f"{name} must be a {module_xp.__name__} array on the GPU, got {type(x).__name__}")
    allowed = tuple(np.dtype(d) for d in dtypes)
    if x.dtype not in allowed:
        names = " or ".join(d.name for d in allowed)
        raise TypeError(f"{name} must have dtype {names}, got {x.dtype} (shape {tuple(x.shape)})")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes, got shape {tuple(x.shape)}")
    return module_xp.ascontiguousarray(x)


def same_dtype(**arrays) -> None:
    """Raise TypeError unless every array has the dtype of the first."""
    (first, a), *rest = arrays.items()
    for name, b in rest:
        if b.dtype != a.dtype:
            raise TypeError(f"{name} has dtype {b.dtype} but {first} has {a.dtype}")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
