"""``matmul(a, b, version=None)``: NumPy-style (batched, broadcasting) matmul on the GPU
with any kernel of the SGEMM sequence in ``matmul.cu`` (1 = naive ... 8 = double buffered).

(The module is not called ``matmul.py`` so that ``minivl.kernels.cuda.matmul``
is the function and this module stays reachable by its own name.)

Same semantics as ``kernels/reference.py::matmul`` (``np.matmul``) for float32
CuPy arrays: 1-D operands are promoted and squeezed back, leading axes
broadcast. When ``b`` is a plain matrix the leading axes of ``a`` fold into its
rows and one launch does it all; otherwise each broadcast batch entry is a launch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from minivl.kernels.cuda import loader

_INT_MAX = 2**31 - 1
_GRID_Y_MAX = 65535


@dataclass(frozen=True)
class Version:
    """How to launch one kernel of the sequence."""

    name: str  # name expression; vectorised kernels get "<true>" / "<false>" appended
    block: tuple[int, int]  # (threads x, threads y)
    tile: tuple[int, int]  # (rows of C, cols of C) per block
    vectorised: bool = False  # float4 path when shapes and pointers allow it
    rows_on_x: bool = False  # kernel 1 puts rows of C on grid x (the uncoalesced lesson)


VERSIONS: dict[int, Version] = {
    1: Version("sgemm1_naive", (32, 32), (32, 32), rows_on_x=True),
    2: Version("sgemm2_coalesced", (32, 32), (32, 32)),
    3: Version("sgemm3_shared_tiles", (32, 32), (32, 32)),
    4: Version("sgemm4_blocktile_1d", (512, 1), (64, 64)),
    5: Version("sgemm5_blocktile_2d", (256, 1), (128, 128)),
    6: Version("sgemm6_vectorized", (256, 1), (128, 128), vectorised=True),
    7: Version("sgemm7_warptiling", (256, 1), (128, 128), vectorised=True),
    8: Version("sgemm8_double_buffered", (256, 1), (128, 128), vectorised=True),
}
DEFAULT_VERSION = 8


def _launch_2d(version: Version, a, b, c) -> None:
    """c = a @ b for contiguous float32 matrices a (M, K), b (K, N), c (M, N)."""
    M, K = a.shape
    N = b.shape[1]
    if max(M * K, K * N, M * N) > _INT_MAX:
        raise ValueError(f"matmul: shapes {a.shape} @ {b.shape} exceed the kernels' 2^31-element int indexing")
    name = version.name
    if version.vectorised:
        aligned = all(loader.data_ptr(x) % 16 == 0 for x in (a, b, c))
        name += "<true>" if (K % 4 == 0 and N % 4 == 0 and aligned) else "<false>"
    tiles_m, tiles_n = loader.ceil_div(M, version.tile[0]), loader.ceil_div(N, version.tile[1])
    grid = (tiles_m, tiles_n, 1) if version.rows_on_x else (tiles_n, tiles_m, 1)
    if grid[1] > _GRID_Y_MAX:
        raise ValueError(f"matmul: shapes {a.shape} @ {b.shape} need more than {_GRID_Y_MAX} blocks along grid y")
    kernel = loader.get_function("matmul.cu", name)
    kernel(grid, (*version.block, 1), (np.int32(M), np.int32(N), np.int32(K), a, b, c))


def matmul(a, b, version: int | None = None):
    """``a @ b`` for float32 CuPy arrays with SGEMM kernel ``version`` (default: the fastest)."""
    version = DEFAULT_VERSION if version is None else version
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {version!r}")
    xp = loader.xp()
    a = loader.device_array(a, "a", (np.float32,))
    b = loader.device_array(b, "b", (np.float32,))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    a = a[None, :] if squeeze_a else a  # (M, K) with M = 1
    b = b[:, None] if squeeze_b else b  # (K, N) with N = 1
    # F.matmul validated the shapes at the door; here they are a contract
    assert a.shape[-1] == b.shape[-2], f"matmul: a {a.shape} and b {b.shape} disagree on the inner size"
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch axes of a {a.shape} and b {b.shape} do not broadcast") from None
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]

    out = xp.empty((*batch, M, N), dtype=np.float32)
    if out.size == 0:
        pass
    elif K == 0:
        out[...] = 0
    elif b.ndim == 2:
        # (..., M, K) @ (K, N): fold the batch into the rows, one launch
        a2 = xp.ascontiguousarray(xp.broadcast_to(a, (*batch, M, K))).reshape(-1, K)
        _launch_2d(VERSIONS[version], a2, b, out.reshape(-1, N))
    else:
        a_b = xp.broadcast_to(a, (*batch, M, K)).reshape(-1, M, K)  # (batch, M, K)
        b_b = xp.broadcast_to(b, (*batch, K, N)).reshape(-1, K, N)  # (batch, K, N)
        out_b = out.reshape(-1, M, N)
        for i in range(out_b.shape[0]):
            _launch_2d(VERSIONS[version], xp.ascontiguousarray(a_b[i]), xp.ascontiguousarray(b_b[i]), out_b[i])

    if squeeze_a:
        out = out[..., 0, :]
    if squeeze_b:
        out = out[..., 0]
    return out
