"""benchmarks/gpu.sh and its Python entry points, checked without a GPU: the
script parses (bash -n), prints its usage, rejects unknown options, and the
kernel benchmark's --dry-run lists its sections. (``gpu.sh --dry-run`` runs all
three parts' entry points; it imports torch and transformers, so it is left
to the script itself rather than CI.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args, **kw):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def test_gpu_script_parses_and_prints_its_usage():
    assert _run("bash", "-n", str(SCRIPT)).returncode == 0
    usage = _run("bash", str(SCRIPT), "--help")
    assert usage.returncode == 0 and "--dry-run" in usage.stdout and "kernels_gpu" in usage.stdout


def test_gpu_script_rejects_an_unknown_option():
    out = _run("bash", str(SCRIPT), "--fast")
    assert out.returncode == 2 and "unknown option --fast" in out.stderr


def test_kernel_benchmark_dry_run_needs_no_gpu(tmp_path):
    out = _run(sys.executable, "benchmarks/bench_kernels_gpu.py", "--dry-run", "--quick",
               "--json", str(tmp_path / "k.json"), "--png", str(tmp_path / "k.png"))
    assert out.returncode == 0, out.stderr
    assert "bench_matmul, bench_rowwise, bench_attention" in out.stdout
    assert not (tmp_path / "k.json").exists()  # a dry run writes nothing
