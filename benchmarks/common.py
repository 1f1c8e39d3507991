"""Shared helpers for the kernel benchmarks (``bench_kernels.py``, ``bench_kernels_gpu.py``).

The llm.c workbench habit: validate every version against the reference
first, then time it; report compile time apart from run time; print a table
and save JSON and a plot. The API, in the order a benchmark uses it:

    check_close(actual, expected, dtype, name)  # validate before timing
    t = time_cpu(fn, *args, repeats=7)          # median seconds, warm-up excluded
    rows.append(Row("softmax_forward", "numba", "4096x4096", t, work=2 * x.nbytes, unit="GB/s"))
    add_ratios(rows, baseline="numpy")          # ratio = baseline time / time, per (op, size)
    print_table(rows)
    save_json(rows, "benchmarks/results/kernels_cpu.json", machine=machine_info())
    plot_rows(rows, "benchmarks/results/kernels_cpu.png")

A GPU benchmark times with CUDA events instead of ``time_cpu`` and fills the
same ``Row``s; everything after that is shared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Default (rtol, atol) for validating a float result against the reference.
TOLERANCES = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-9, 1e-11)}


@dataclass
class Row:
    """One timed (op, version, size): the unit of every table, JSON file and plot."""

    op: str  # "matmul", "attention_forward", ...
    version: str  # "numpy", "numba", "numba v1", "torch", "cuda v3", ...
    size: str  # "1024x1024x1024", "B1 H4 N1024 d64", ...
    time_s: float  # median seconds per call
    work: float = 0.0  # FLOPs (unit GFLOP/s) or bytes moved (unit GB/s) per call
    unit: str = "GFLOP/s"
    ratio: float | None = None  # baseline time / this time (>1: faster than the baseline)
    compile_s: float | None = None  # one-off JIT / NVRTC time, never inside time_s
    note: str = ""

    @property
    def rate(self) -> float:
        """GFLOP/s or GB/s (``work`` per second, in units of 1e9)."""
        return self.work / self.time_s / 1e9 if self.time_s > 0 else float("nan")


def time_cpu(fn, *args, repeats: int = 7, warmup: int = 1, settle_s: float = 0.2,
             clock: str = "wall") -> float:
    """Median time of ``fn(*args)`` in seconds, after ``warmup`` untimed calls.

    ``settle_s`` of sleep before timing lets the idle worker threads of the
    *previous* library (OpenBLAS and Numba both spin-wait for a while after a
    parallel call) go to sleep, so two thread pools never fight for the cores.
    ``clock="cpu"`` measures this process's CPU time instead of wall time:
    with one thread it is immune to other processes sharing the machine
    (with several it sums their time, so use it single-threaded only).
    """
    now = {"wall": time.perf_counter, "cpu": time.process_time}[clock]
    for _ in range(warmup):
        fn(*args)
    time.sleep(settle_s)
    times = []
    for _ in range(repeats):
        t0 = now()
        fn(*args)
        times.append(now() - t0)
    return statistics.median(times)


def check_close(actual, expected, dtype=None, name="value", rtol=None, atol=None):
    """Raise AssertionError naming ``name`` unless actual matches expected.

    Tolerances default to ``TOLERANCES[dtype]``; ``atol`` is relative to the
    largest |expected| entry (sums over many rows round at that scale);
    non-finite entries must match exactly.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dtype = np.dtype(dtype or expected.dtype)
    d_rtol, d_atol = TOLERANCES.get(dtype, (1e-4, 1e-5))
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(
        actual, expected, rtol=d_rtol if rtol is None else rtol,
        atol=(d_atol if atol is None else atol) * scale, err_msg=f"validation failed: {name}",
    )


def add_ratios(rows: list[Row], baseline: str = "numpy") -> None:
    """Set ``ratio`` = baseline time / row time for rows sharing (op, size) with a baseline row."""
    base = {(r.op, r.size): r.time_s for r in rows if r.version == baseline}
    for r in rows:
        t = base.get((r.op, r.size))
        r.ratio = t / r.time_s if t and r.time_s > 0 else None


def print_table(rows: list[Row], baseline: str = "numpy") -> None:
    """Print ``op | version | size | time | rate | x baseline | compile`` as a Markdown table."""
    header = f"| op | version | size | time (ms) | rate | x {baseline} | compile (s) |"
    print(header)
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        comp = f"{r.compile_s:.2f}" if r.compile_s is not None else ""
        print(f"| {r.op} | {r.version} | {r.size} | {r.time_s * 1e3:.3f} | "
              f"{r.rate:.1f} {r.unit} | {ratio} | {comp} |")


def machine_info(**extra) -> dict:
    """Where the numbers come from: CPU, cores, library versions, BLAS, relevant env vars."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in (
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")},
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    info.update(extra)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def save_json(rows: list[Row], path, machine: dict | None = None, **meta) -> None:
    """Write ``{"machine": ..., **meta, "rows": [...]}`` (rows with their rate) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine or machine_info(), **meta,
            "rows": [{**dataclasses.asdict(r), "rate": r.rate} for r in rows]}
    path.write_text(json.dumps(data, indent=2) + "\n")


def plot_rows(rows: list[Row], path, baseline: str = "numpy", title: str = "", ncols: int = 4) -> None:
    """A grid with one panel per op: bars of the speed-up over ``baseline`` per size
    and version (log scale; the line at 1 is the baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda y, _: f"{y:g}")  # 2, 3, not 2x10^0

    ops = list(dict.fromkeys(r.op for r in rows))
    versions = list(dict.fromkeys(r.version for r in rows if r.version != baseline))
    colours = {v: f"C{i}" for i, v in enumerate(versions)}
    nrows = -(-len(ops) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.axis("off")
    for ax, op in zip(axes.flat, ops):
        sizes = list(dict.fromkeys(r.size for r in rows if r.op == op))
        here = [v for v in versions if any(r.op == op and r.version == v for r in rows)]
        width = 0.8 / max(len(here), 1)
        for vi, version in enumerate(here):
            ratios = {r.size: r.ratio for r in rows if r.op == op and r.version == version}
            xs = [si + vi * width for si, s in enumerate(sizes) if ratios.get(s)]
            ys = [ratios[s] for s in sizes if ratios.get(s)]
            ax.bar(xs, ys, width, label=version, color=colours[version])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))])
        ax.set_xticklabels(sizes, rotation=20, ha="right", fontsize=7)
        ax.set_title(op, fontsize=9)
        ax.set_ylabel(f"x {baseline}", fontsize=8)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
