"""Thread control for minivl's commands (minivl/threads.py, the global --threads option)."""

import numba
import numpy as np  # noqa: F401  (loads OpenBLAS, so threadpoolctl sees a BLAS pool)
import pytest

from minivl.cli import main
from minivl.threads import current_threads, default_threads, limit_threads, parse_threads


def test_default_is_one_thread_per_pool_unless_the_user_decided():
    assert default_threads({}) == {"blas": 1, "numba": 1}
    assert default_threads({"OPENBLAS_NUM_THREADS": "2"}) == {"blas": None, "numba": 1}
    assert default_threads({"OMP_NUM_THREADS": "4", "NUMBA_NUM_THREADS": "2"}) == {"blas": None, "numba": None}
    assert default_threads({"MINIVL_THREADS": "3", "OMP_NUM_THREADS": "4"}) == {"blas": 3, "numba": 3}
    assert default_threads({"OPENBLAS_NUM_THREADS": ""}) == {"blas": 1, "numba": 1}  # empty: no decision
    with pytest.raises(ValueError, match="MINIVL_THREADS"):
        default_threads({"MINIVL_THREADS": "many"})


@pytest.mark.parametrize("bad", [0, -1, "x", None])
def test_parse_threads_refuses_what_is_not_a_positive_count(bad):
    assert parse_threads("2") == 2
    with pytest.raises(ValueError, match="positive integer"):
        parse_threads(bad)


def test_limit_sets_both_pools_and_restores_blas():
    before = current_threads()
    limiter = limit_threads(blas=1, numba=1)
    try:
        now = current_threads()
        assert now["numba"] == 1
        assert now["blas"] in (None, 1)  # None: no BLAS pool visible to threadpoolctl
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        numba.set_num_threads(before["numba"])
    assert current_threads() == before
    limit_threads(numba=10**6)  # clipped to what Numba started with, not an error
    assert current_threads()["numba"] == numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(before["numba"])
    assert limit_threads() is None


def test_cli_refuses_a_bad_count(capsys):
    with pytest.raises(SystemExit):
        main(["--threads", "0", "info"])
    assert "positive integer" in capsys.readouterr().err


def test_a_limit_set_before_numpy_is_imported_holds():
    """minivl's package import is lazy: limit_threads must load BLAS itself, or threadpoolctl
    finds no pool to limit and NumPy later starts with all its threads."""
    import subprocess
    import sys

    code = ("from minivl.threads import limit_threads, current_threads; limit_threads(1, 1); "
            "import numpy; print(current_threads()['blas'])")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() in ("1", "None")


def test_numba_kernels_run_on_the_workqueue_layer_when_several_threads_will_run():
    """The OpenMP layer's spinning workers made two-thread steps 5x slower (minivl/threads.py):
    with more than one Numba thread the kernels package picks ``workqueue`` before its first
    parallel kernel; at one thread (minivl's commands' default) Numba keeps its own choice,
    which enters a kernel 20x faster; a ``NUMBA_THREADING_LAYER`` the user set wins."""
    import os
    import subprocess
    import sys

    from minivl.threads import choose_numba_layer

    assert choose_numba_layer(2, {"NUMBA_THREADING_LAYER": "omp"}) is None

    def layer(prelude, **env_vars):
        code = (f"import numpy as np, numba; {prelude}; from minivl.kernels.numba import KERNELS; "
                "KERNELS['softmax_forward'](np.ones((4096, 128), np.float32)); print(numba.threading_layer())")
        # 2**19 elements: large enough for the parallel build (kernels/numba/_parallel.py), whose
        # first call starts Numba's threads; the serial build never does
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS")}
        env.update(NUMBA_NUM_THREADS="2", **env_vars)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        return out.stdout.split()[-1] if out.returncode == 0 else None

    assert layer("pass") == "workqueue"  # a library user's process: Numba runs as many threads as cores
    numba_default = layer("numba.config.THREADING_LAYER = 'default'; import minivl.threads as t; "
                          "t.choose_numba_layer = lambda *a, **k: None")
    assert layer("from minivl.threads import limit_threads; limit_threads(numba=1)") == numba_default
    assert layer("from minivl.threads import limit_threads; limit_threads(numba=2)") == "workqueue"
    chosen = layer("pass", NUMBA_THREADING_LAYER="omp")
    assert chosen in ("omp", None)  # None: no OpenMP runtime on this machine, nothing more to check
