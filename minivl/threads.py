"""How many threads BLAS (OpenBLAS, under NumPy's matmul) and the Numba kernels may use.

The lecture's models multiply small matrices (64 to 256 wide, a few thousand
rows) and run small fused kernels. For those, worker threads cost more to wake
and to join on every call than they save, and when anything else uses the
cores they wait for each other. Measured on the 2-core development machine:

* the whole quick tour of the time took 226 s at one thread each on a quiet machine
  (``results/tour_quick_20261204.json``) against 780 s at the default two (the same
  file as of commit f5a6515; BERT 12 vs 35 s, GPT 5 vs 29 s, ViT 32 vs 123 s,
  CLIP 133 vs 500 s, the same accuracies);
* its ViLBERT stage (30 + 30 + 30 steps) took 15.3 + 13.4 + 12.0 s at two
  threads on the quiet machine (``results/tour_quick.json`` of f5a6515),
  2.4 + 2.2 + 1.5 s at one BLAS and one Numba thread at load 10
  (``results/tour_quick_vilbert_1thread.json``), same accuracies;
* the same stage at one BLAS thread but two Numba threads, at load 12, took 57 +
  64 + 50 s (``results/tour_quick_partial_numba2.json``): Numba's threads suffer
  as much as OpenBLAS's.

Numba's threads, when there are more than one, sleep between kernels instead
of spinning: ``choose_numba_layer`` picks Numba's own ``workqueue`` threading
layer over its OpenMP one (the default wherever an OpenMP runtime is found)
whenever more than one Numba thread will run. GNU OpenMP keeps each idle
worker spinning for a while after a parallel region; a training step runs
hundreds of short kernels with Python and OpenBLAS in between, so the spinning
workers take the cores those need. Measured on the quiet 2-core machine
(``benchmarks/bench_train.py``): GPT's training step took 144 ms at two threads
on the OpenMP layer against 26.5 ms at one (``benchmarks/results/train_cpu_omp_layer.json``,
every model 2.4-7.9x slower at two threads than at one), and 22.6 ms at two threads on
``workqueue`` (``benchmarks/results/train_cpu_2threads.json``, every model faster
at two threads than at one); a scratch run (not kept) with ``GOMP_SPINCOUNT=0``,
which stops the spinning, made the OpenMP layer as fast as ``workqueue``. At one thread the OpenMP layer stays: it
runs the kernel inline, where ``workqueue`` hands even a one-thread kernel to a
sleeping worker and waits: entering an empty parallel kernel took 0.67 us on the
OpenMP layer and 115 us on ``workqueue`` (``benchmarks/bench_numba_layers.py``,
``benchmarks/results/numba_layers_cpu.json``). That wake-up is also why small
calls run a serial build of each kernel (``kernels/numba/_parallel.py``). A
``NUMBA_THREADING_LAYER`` the user set is left alone. ``workqueue`` must not be
entered from two Python threads at once; minivl runs its kernels from one.

So ``minivl``'s commands run both on one thread unless told otherwise:
``--threads N``, ``$MINIVL_THREADS``, or the usual variables, which mean "the
user decided" and are left alone: ``OPENBLAS_NUM_THREADS`` /
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for BLAS, ``NUMBA_NUM_THREADS`` for
Numba. Benchmarks choose their thread counts themselves
(``benchmarks/bench_train.py --threads``).
"""

from __future__ import annotations

import os

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
NUMBA_VARIABLES = ("NUMBA_NUM_THREADS",)


def default_threads(environ=None) -> dict:
    """``{"blas": n or None, "numba": n or None}`` for minivl's commands: ``$MINIVL_THREADS``
    for both when set; otherwise None (leave it) for a pool whose own variable the user set,
    else 1."""
    env = os.environ if environ is None else environ
    value = env.get("MINIVL_THREADS")
    if value:
        n = parse_threads(value, "MINIVL_THREADS")
        return {"blas": n, "numba": n}
    return {"blas": None if any(env.get(k) for k in BLAS_VARIABLES) else 1,
            "numba": None if any(env.get(k) for k in NUMBA_VARIABLES) else 1}


def parse_threads(value, name="threads") -> int:
    """A positive thread count from ``value``; a ValueError naming ``name`` otherwise."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def choose_numba_layer(threads: int, environ=None) -> str | None:
    """Before Numba starts its threads (its first parallel kernel or ``set_num_threads``):
    with more than one thread to run, make its parallel kernels use the ``workqueue``
    threading layer, whose idle workers sleep (see the module docstring). Returns the
    layer asked for, or None where Numba's own choice stands (one thread, or a
    ``$NUMBA_THREADING_LAYER`` the user set). Without effect once the threads run."""
    env = os.environ if environ is None else environ
    if env.get("NUMBA_THREADING_LAYER"):
        return None
    import numba as nb

    # the last call before the threads start wins: one thread puts Numba's default back
    nb.config.THREADING_LAYER = "workqueue" if threads > 1 else "default"
    return "workqueue" if threads > 1 else None


def limit_threads(blas: int | None = None, numba: int | None = None):
    """Cap the BLAS pools and the Numba kernels of this process (None: leave that one).
    Numba cannot go above the ``NUMBA_NUM_THREADS`` it started with; the cap is clipped
    to it. Returns the ``threadpoolctl`` limiter of BLAS (it can restore) or None."""
    limiter = None
    if blas is not None:
        import numpy  # noqa: F401  (load BLAS first: threadpoolctl limits only the libraries loaded)
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(parse_threads(blas, "blas threads"), user_api="blas")
    if numba is not None:
        import numba as nb

        n = min(parse_threads(numba, "numba threads"), nb.config.NUMBA_NUM_THREADS)
        choose_numba_layer(n)  # before set_num_threads starts the pool
        nb.set_num_threads(n)
    return limiter


def current_threads() -> dict:
    """``{"blas": largest BLAS pool (None if none loaded), "numba": Numba's thread count}``."""
    import numba as nb
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return {"blas": max(counts) if counts else None, "numba": nb.get_num_threads()}


__all__ = ["BLAS_VARIABLES", "NUMBA_VARIABLES", "choose_numba_layer", "current_threads", "default_threads",
           "limit_threads", "parse_threads"]
