"""Every notebook (a jupytext py:percent file in notebooks/) executes top to
bottom in a fresh Jupyter kernel: every code cell runs, none raises (notebooks
check their own results with ``assert``), and each shows the figures a reader
looks at. Notebooks keep their settings small so this stays quick."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, so figures are outputs
    monkeypatch.setenv("MINIVL_NOTEBOOK_CI", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # two workers' kernels on two cores: one thread each, or BLAS threads thrash
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            monkeypatch.setenv(var, "1")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    skipped = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    assert not skipped, f"code cells {skipped} of {path.name} never ran"
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} shows no figure"
