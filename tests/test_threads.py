"""BLAS thread control for minivl's commands (minivl/threads.py, the --blas-threads option)."""

import numpy as np  # noqa: F401  (loads OpenBLAS, so threadpoolctl sees a BLAS pool)
import pytest

from minivl.cli import main
from minivl.threads import blas_threads, default_blas_threads, limit_blas_threads, parse_threads


def test_default_is_one_thread_unless_the_user_decided():
    assert default_blas_threads({}) == 1
    assert default_blas_threads({"OPENBLAS_NUM_THREADS": "2"}) is None  # theirs: leave BLAS alone
    assert default_blas_threads({"OMP_NUM_THREADS": "4"}) is None
    assert default_blas_threads({"MINIVL_BLAS_THREADS": "3", "OMP_NUM_THREADS": "4"}) == 3
    assert default_blas_threads({"OPENBLAS_NUM_THREADS": ""}) == 1  # set but empty: not a decision
    with pytest.raises(ValueError, match="MINIVL_BLAS_THREADS"):
        default_blas_threads({"MINIVL_BLAS_THREADS": "many"})


@pytest.mark.parametrize("bad", [0, -1, "x", None])
def test_parse_threads_refuses_what_is_not_a_positive_count(bad):
    assert parse_threads("2") == 2
    with pytest.raises(ValueError, match="positive integer"):
        parse_threads(bad)


def test_limit_sets_and_restores_the_blas_pools():
    if blas_threads() is None:
        pytest.skip("no BLAS pool visible to threadpoolctl")
    before = blas_threads()
    limiter = limit_blas_threads(1)
    try:
        assert blas_threads() == 1
    finally:
        limiter.restore_original_limits()
    assert blas_threads() == before
    assert limit_blas_threads(None) is None


def test_cli_refuses_a_bad_count(capsys):
    with pytest.raises(SystemExit):
        main(["--blas-threads", "0", "info"])
    assert "positive integer" in capsys.readouterr().err
