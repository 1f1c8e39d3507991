"""The CUDA sources build with nvcc for sm_90 and sm_80 (no GPU needed), stay
within what NVRTC can compile, and define every kernel the loader asks for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from minivl.kernels.cuda import loader

ROOT = Path(__file__).resolve().parents[2]
CUDA_DIR = ROOT / "kernels" / "cuda"
SCRIPT = ROOT / ".ci" / "compile_cuda.sh"
SOURCES = sorted(p.name for p in CUDA_DIR.glob("*.cu"))

needs_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("c++filt") is None, reason="needs nvcc and c++filt"
)


def test_the_loader_names_kernels_for_every_source():
    assert SOURCES and set(SOURCES) == set(loader.NAME_EXPRESSIONS)


@pytest.mark.parametrize("source", [*SOURCES, "common.cuh"])
def test_device_sources_include_only_common_cuh(source):
    # NVRTC has no host headers (<cmath>, <cstdint>, ...); the loader pastes common.cuh in itself
    includes = re.findall(r"^\s*#\s*include\s+(\S+)", (CUDA_DIR / source).read_text(), flags=re.M)
    assert set(includes) <= (set() if source == "common.cuh" else {'"common.cuh"'})


def _kernel_names(ptx: str) -> set[str]:
    """Kernel entry points of a PTX file, demangled to name expressions."""
    entries = re.findall(r"\.entry\s+([\w$]+)", ptx)
    demangled = subprocess.run(["c++filt"], input="\n".join(entries), capture_output=True, text=True, check=True)
    # 'void softmax_forward<float>(float const*, float*, int)' -> 'softmax_forward<float>'
    return {re.sub(r"^void ", "", line.split("(")[0]) for line in demangled.stdout.splitlines()}


@needs_nvcc
@pytest.mark.parametrize("source", SOURCES)
def test_compiles_for_sm90_and_sm80_with_every_named_kernel(source, tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT), f"kernels/cuda/{source}"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "KEEP_DIR": str(tmp_path), "CUDA_ARCHS": "90 80"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for arch in ("90", "80"):
        built = _kernel_names((tmp_path / f"{Path(source).stem}.compute_{arch}.ptx").read_text())
        missing = set(loader.NAME_EXPRESSIONS[source]) - built
        assert not missing, f"{source} (sm_{arch}) does not build {sorted(missing)}; it builds {sorted(built)}"


@needs_nvcc
def test_the_text_given_to_nvrtc_compiles_on_its_own(tmp_path):
    # the loader pastes common.cuh in place of its #include: the result needs no include path
    text = loader.source("softmax.cu")
    assert not re.search(r"^\s*#\s*include", text, flags=re.M)
    (tmp_path / "pasted.cu").write_text(text)
    result = subprocess.run(
        ["nvcc", "-std=c++17", "-arch=sm_90", "-Werror", "all-warnings", "-ptx", "pasted.cu", "-o", "pasted.ptx"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert {"softmax_forward<float>", "log_softmax_backward<double>"} <= _kernel_names(
        (tmp_path / "pasted.ptx").read_text())


@needs_nvcc
def test_the_compile_script_fails_on_a_broken_source(tmp_path):
    broken = tmp_path / "broken.cu"
    broken.write_text('extern "C" __global__ void k(float* x) { x[0] = undeclared; }\n')
    result = subprocess.run(["bash", str(SCRIPT), str(broken)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "FAILED" in result.stderr
