"""Start a program under ``mpirun`` from a test, on any machine CI runs on.

The launcher next to the Python interpreter (the MPI extra installs it into
the virtual environment) is preferred to one on PATH. Open MPI refuses more
ranks than cores and running as root unless told (``--oversubscribe``, the
``OMPI_ALLOW_RUN_AS_ROOT*`` variables); MPICH needs neither. Every run has a
wall-clock limit, so a hung job fails the test instead of the CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def launcher() -> str:
    pytest.importorskip("mpi4py", reason='the MPI extra is not installed (pip install -e ".[mpi]")')
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec") or shutil.which("mpirun")
    if not found:
        pytest.skip("mpi4py is installed but no mpiexec was found")
    return found


def run(n, script, *args, timeout=120, env=None, cwd=None, python_args=()):
    """``mpiexec -n n python [python_args] script args``; returns the CompletedProcess."""
    exe = launcher()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    flags, extra_env = [], {}
    if "Open MPI" in version or "OpenRTE" in version:
        flags = ["--oversubscribe"]
        extra_env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                     "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", **extra_env, **(env or {})}
    command = [exe, "-n", str(n), *flags, sys.executable, *python_args, str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
