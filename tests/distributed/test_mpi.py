"""Data parallel over real MPI processes (``mpirun -n 2`` and ``-n 4``, oversubscribed
on a 2-core machine): one step equals one process on the global batch, a
resumed run equals an uninterrupted one, and failures end the job with the
failing rank named. Skipped when the MPI extra is not installed."""

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent
WORKER = HERE / "mpi_worker.py"
_spec = importlib.util.spec_from_file_location("mpirun_helper", HERE / "mpirun.py")
mpirun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mpirun)


def _run(tmp_path, n, scenario, **kw):
    out = tmp_path / f"{scenario}.json"
    proc = mpirun.run(n, WORKER, scenario, out, cwd=tmp_path, **kw)
    return proc, out


@pytest.mark.parametrize("n", [2, 4])
def test_one_step_equals_a_single_process_on_the_global_batch(tmp_path, n):
    proc, out = _run(tmp_path, n, "step")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["size"] == n
    for rank, report in enumerate(result["ranks"]):
        for model in ("clip_full", "clip_local", "gpt"):
            assert report[model]["loss"] < 1e-12, (rank, model, report[model])
            assert report[model]["grad"] < 1e-12, (rank, model, report[model])
            assert report[model]["buckets"] > 1  # the gradients really travelled in several buckets


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    proc, out = _run(tmp_path, 2, "resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["resume"] < 1e-12 for r in json.loads(out.read_text())["ranks"])


def test_a_failing_rank_ends_the_job_and_is_named(tmp_path):
    proc, out = _run(tmp_path, 2, "fail", timeout=60)
    assert proc.returncode != 0 and not out.exists()
    assert "rank 1 of 2 failed (RuntimeError: planted failure)" in proc.stderr


def test_a_hung_rank_times_out_and_is_named(tmp_path):
    proc, out = _run(tmp_path, 2, "hang", timeout=60, env={"MINIVL_DIST_TIMEOUT": "2"})
    assert proc.returncode != 0 and not out.exists()
    assert "rank(s) [1] did not reach step 1 within 2 s" in proc.stderr


def test_ranks_with_different_configurations_are_refused(tmp_path):
    proc, out = _run(tmp_path, 2, "config", timeout=60)
    assert proc.returncode != 0 and not out.exists()
    assert "rank(s) [1] differ from rank 0 in ['lr']" in proc.stderr


def test_gpt_train_command_on_two_ranks_matches_one_process(tmp_path):
    """``mpirun -n 2 minivl gpt train --distributed`` and ``minivl gpt train`` with the
    same global batch end at the same weights (float32: the sums differ in order)."""
    import subprocess
    import sys

    import numpy as np

    from minivl.io import load

    args = ["-m", "minivl", "gpt", "train", "--steps", "3", "--batch-size", "8", "--depth", "1", "--dim", "16",
            "--quiet"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = mpirun.run(2, args[1], *args[2:], "--distributed", "--out", tmp_path / "two", cwd=tmp_path,
                     timeout=300, python_args=["-m"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("checkpoint:") == 1  # only rank 0 reports
    a, b = load(tmp_path / "one" / "gpt.safetensors"), load(tmp_path / "two" / "gpt.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
