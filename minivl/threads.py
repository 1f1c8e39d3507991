"""How many threads BLAS (OpenBLAS, under NumPy's matmul) may use.

The lecture's models multiply small matrices (64 to 256 wide, a few thousand
rows). For those, OpenBLAS's worker threads cost more to wake and to join on
every call than they save, and on a machine where other work competes for the
cores they wait for each other: the quick tour's ViLBERT stage took 45.6 s
with OpenBLAS's default two threads on a quiet 2-core machine
(``results/tour_quick.json`` before this module) and 16 s with one thread on
the same machine at load 10. So ``minivl``'s commands run BLAS on one thread
unless told otherwise: ``--blas-threads N``, ``$MINIVL_BLAS_THREADS``, or the
usual ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
(any of them set means "the user decided"; minivl leaves BLAS alone). The
Numba kernels have their own threads (``NUMBA_NUM_THREADS``), untouched here.

Benchmarks choose their thread counts themselves (``benchmarks/bench_train.py
--threads``).
"""

from __future__ import annotations

import os

USER_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_blas_threads(environ=None) -> int | None:
    """The BLAS thread count minivl's commands use: ``$MINIVL_BLAS_THREADS`` when set, None
    (leave BLAS as it is) when one of ``USER_VARIABLES`` is set, else 1."""
    env = os.environ if environ is None else environ
    value = env.get("MINIVL_BLAS_THREADS")
    if value:
        return parse_threads(value, "MINIVL_BLAS_THREADS")
    if any(env.get(k) for k in USER_VARIABLES):
        return None
    return 1


def parse_threads(value, name="blas threads") -> int:
    """A positive thread count from ``value``; a ValueError naming ``name`` otherwise."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def limit_blas_threads(n: int | None):
    """Cap every BLAS pool of this process at ``n`` threads (None: leave them). Returns the
    ``threadpoolctl`` limiter (it can restore the old counts) or None."""
    if n is None:
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(parse_threads(n), user_api="blas")


def blas_threads() -> int | None:
    """The largest thread count among this process's BLAS pools (None when none is loaded)."""
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None


__all__ = ["USER_VARIABLES", "blas_threads", "default_blas_threads", "limit_blas_threads", "parse_threads"]
