"""The CPU emulator of the CUDA kernels (``kernels/cuda/emulate.py``) fails
where a GPU would fail, or would fail on some runs.

Each planted bug of ``planted_bugs.cu`` -- a missing barrier, a read of shared
memory nobody wrote, a misaligned ``float4`` load, a write past a shared array
-- is run next to its fixed twin: the twin gives the right answer, the bug
gives NaN or stops a sanitized process with a report. Then a few small cases
of every real kernel family run under the sanitizers and must come out clean.
The kernel-by-kernel checks against the reference are in
``test_cuda_kernels.py`` (they run on the emulator and, where present, a GPU).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from minivl.kernels.cuda import emulate, loader

PLANTED = Path(__file__).with_name("planted_bugs.cu")
NAMES = ("neighbour_without_barrier", "sum_reading_unwritten_slots", "float4_copy", "shared_overflow")

pytestmark = pytest.mark.skipif(not emulate.available(), reason=f"the emulator needs a C++ compiler ({emulate.CXX})")


def planted(seed=0, fill_shared=True):
    return emulate.kernels_of(PLANTED, NAMES, seed=seed, fill_shared=fill_shared)


def run(kernel, flag):
    x = np.arange(1, 65, dtype=np.float32)
    y = np.full(64, np.nan, np.float32)
    kernel((1,), (64,), (x, y, np.int32(flag)))
    return x, y


def test_a_missing_barrier_gives_nan_once_the_threads_are_shuffled():
    in_order = planted(seed=-1)["neighbour_without_barrier"]
    x, y = run(in_order, 0)
    np.testing.assert_array_equal(y[1:], x[:-1])  # index order hides the race ...
    for seed in range(3):
        kernel = planted(seed=seed)["neighbour_without_barrier"]
        x, y = run(kernel, 0)
        assert np.isnan(y).any(), f"seed {seed}: the race went unseen"  # ... a shuffled order shows it
        x, y = run(kernel, 1)
        np.testing.assert_array_equal(y[1:], x[:-1])  # and with the barrier every order is right


def test_a_read_of_unwritten_shared_memory_gives_nan():
    # (before the NaN fill, C++ zero-initialised statics made this bug give the right sum)
    x, y = run(planted()["sum_reading_unwritten_slots"], 1)
    assert np.isnan(y).all()
    x, y = run(planted()["sum_reading_unwritten_slots"], 0)
    assert (y == x.sum()).all()


def test_shared_memory_is_refilled_with_nan_for_every_block():
    kernel = planted()["sum_reading_unwritten_slots"]
    run(kernel, 0)  # leaves finite totals behind in the shared table
    x, y = run(kernel, 1)
    assert np.isnan(y).all()


@pytest.fixture(scope="module")
def sanitized_planted_bugs():
    """Each planted bug in its own sanitized process: (returncode, stderr) by case."""
    cases = {"aligned": ("float4_copy", 0), "misaligned": ("float4_copy", 1),
             "in bounds": ("shared_overflow", 32), "overflow": ("shared_overflow", 64)}
    results = {}
    for case, (name, flag) in cases.items():
        code = f"""
            import numpy as np
            from minivl.kernels.cuda import emulate
            kernel = emulate.kernels_of({str(PLANTED)!r}, {NAMES!r})[{name!r}]
            buffer = np.zeros(68, np.float32)
            start = (-buffer.ctypes.data % 16) // 4
            x = buffer[start:start + 64]  # 16-byte aligned, as a CUDA allocation is
            x[:] = np.arange(1, 65)
            y = np.full(64, np.nan, np.float32)
            kernel((1,), (64,), (x, y, np.int32({flag})))
            assert y[0] == x[{flag}] if {name!r} == "float4_copy" else (y == x[np.arange(64) % 32]).all()
            print("finished")
        """
        result = emulate.run_sanitized(textwrap.dedent(code))
        results[case] = (result.returncode, result.stdout + result.stderr)
    return results


def test_a_misaligned_float4_load_stops_the_sanitized_build(sanitized_planted_bugs):
    code, output = sanitized_planted_bugs["aligned"]
    assert code == 0 and "finished" in output, output
    code, output = sanitized_planted_bugs["misaligned"]
    assert code != 0 and "misaligned address" in output and "finished" not in output, output


def test_a_write_past_a_shared_array_stops_the_sanitized_build(sanitized_planted_bugs):
    code, output = sanitized_planted_bugs["in bounds"]
    assert code == 0 and "finished" in output, output
    code, output = sanitized_planted_bugs["overflow"]
    assert code != 0 and "global-buffer-overflow" in output and "finished" not in output, output


def test_the_sanitized_build_needs_its_runtime_loaded_first():
    if emulate.sanitizer_loaded():
        pytest.skip("this process already has the sanitizer runtime")
    with pytest.raises(RuntimeError, match="LD_PRELOAD"):
        emulate.build(sanitize=True)


# Small cases of every kernel family, past the tile, warp and slab boundaries,
# including the float4 paths of SGEMM 6-8 and the tensor-core attention.
SANITIZED_KERNELS = """
import numpy as np
from minivl.kernels import cuda, reference
from minivl.kernels.cuda import emulate

rng = np.random.default_rng(0)
def close(got, want, tol):
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

with emulate.on_cpu():
    x = rng.standard_normal((3, 129)).astype(np.float32)
    close(cuda.softmax_forward(x), reference.softmax_forward(x), 1e-5)
    x = rng.standard_normal((40, 40)).astype(np.float32)
    gamma, beta = np.ones(40, np.float32), np.zeros(40, np.float32)
    y, mean, rstd = cuda.layer_norm_forward(x, gamma, beta)
    for got, want in zip(cuda.layer_norm_backward(x, x, gamma, mean, rstd),
                         reference.layer_norm_backward(x, x, gamma, mean, rstd)):
        close(got, want, 1e-4)
    for version in (5, 6, 7, 8):
        for m, k, n in ((129, 8, 132), (129, 7, 130)):  # float4 path, then the scalar one
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            close(cuda.matmul(a, b, version=version), a @ b, 1e-4)
    q, k, v = (rng.standard_normal((1, 2, 40, 72)).astype(np.float32) for _ in range(3))
    o_ref, lse_ref = reference.attention_forward(q, k, v, None, True)
    for forward in (cuda.attention_forward_naive, cuda.attention_forward_online, cuda.attention_forward):
        o, lse = forward(q, k, v, None, True)
        close(o, o_ref, 1e-4)
    do = rng.standard_normal(o.shape).astype(np.float32)
    for got, want in zip(cuda.attention_backward(q, k, v, o, lse, do, None, True),
                         reference.attention_backward(q, k, v, o_ref, lse_ref, do, None, True)):
        close(got, want, 1e-4)
    h = [t.astype(np.float16) for t in (q, k, v)]
    o, lse = cuda.attention_forward_mma(*h, None, True)
    close(o.astype(np.float32), reference.attention_forward(*(t.astype(np.float32) for t in h), None, True)[0],
          4e-3)
print("finished")
"""


def test_every_kernel_family_runs_clean_under_the_sanitizers():
    result = emulate.run_sanitized(SANITIZED_KERNELS)
    assert result.returncode == 0 and "finished" in result.stdout, result.stdout + result.stderr[-4000:]


def test_emulator_rejects_arguments_of_the_wrong_c_type():
    x = np.ones((2, 40), np.float32)
    with emulate.on_cpu() as xp:
        y = xp.empty_like(x)
        kernel = loader.get_function("softmax.cu", "softmax_forward<float>")
        with pytest.raises(TypeError, match="NumPy scalar"):
            kernel((2,), (32,), (x, y, 40))
        with pytest.raises(RuntimeError, match="argument 2"):
            kernel((2,), (32,), (x, y, np.int64(40)))
        with pytest.raises(RuntimeError, match="3 parameters"):
            kernel((2,), (32,), (x, y))
        kernel((2,), (32,), (x, y, np.int32(40)))
        np.testing.assert_allclose(y, 1 / 40, rtol=1e-6)
