"""GPU benchmark of minivl's CUDA kernels against cuBLAS, CuPy and PyTorch.

    python benchmarks/bench_kernels_gpu.py [--quick] [--json PATH] [--png PATH]

The llm.c workbench habit (see benchmarks/common.py): every version is first
validated -- against the NumPy reference on a small odd shape, and against
the anchor at the timed shape -- and only then timed, with CUDA events, as the
median of many launches after warm-up. NVRTC compile time is measured apart
(first call minus a steady call; CuPy's on-disk kernel cache is switched off
so that it is a real compile). Anchors, each measured in the same run:

* matmul: cuBLAS through ``cupy.matmul`` in fp32 with TF32 off (``CUPY_TF32=0``);
  also PyTorch with ``allow_tf32 = False``;
* softmax, layer norm, GELU: PyTorch's fused kernels (CuPy's composed
  max/exp/sum/divide is shown too); rates are effective GB/s, bytes read + written;
* attention: ``torch.nn.functional.scaled_dot_product_attention``, fp32 for
  the fp32 kernel and fp16 (FlashAttention-2) for the tensor-core kernel.

Prints a table (op, version, size, time, TFLOP/s or GB/s, ratio to the anchor)
and writes JSON and a PNG. ``--quick`` trims sizes and repetitions; the full
run is sized to finish in about 3 minutes on an H100/H200.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

# before CuPy is imported: fp32 matmul without TF32, and no on-disk kernel cache
os.environ["CUPY_TF32"] = "0"
os.environ["CUPY_CACHE_IN_MEMORY"] = "1"

try:  # run as a script: benchmarks/ is on sys.path
    from common import Row, check_close, machine_info, print_table, save_json
except ImportError:  # imported as benchmarks.bench_kernels_gpu
    from benchmarks.common import Row, check_close, machine_info, print_table, save_json

from minivl.kernels import reference

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {  # matmul n (n x n x n), row-wise (rows, cols), attention (B, H, N, d)
    "full": {"matmul": (1024, 2048, 4096), "rowwise": (16384, 4096), "attention": (4, 16, 4096, 64)},
    "quick": {"matmul": (1024, 4096), "rowwise": (4096, 4096), "attention": (2, 16, 2048, 64)},
}


def _import_gpu_stack():
    try:
        import cupy
    except ImportError:
        raise SystemExit("bench_kernels_gpu: CuPy is not installed (pip install -e '.[gpu]' on a GPU)") from None
    from minivl.kernels import cuda

    if not cuda.available():
        raise SystemExit("bench_kernels_gpu: no CUDA device visible to CuPy")
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return cupy, cuda, torch


class Bench:
    """Timing with CUDA events, plus the rows collected so far."""

    def __init__(self, cupy, torch, quick: bool):
        self.cupy, self.torch, self.quick = cupy, torch, quick
        self.sizes = SIZES["quick" if quick else "full"]
        self.rows: list[Row] = []
        self.anchors: dict[tuple[str, str], float] = {}  # (op, size) -> the anchor's seconds
        self.budget_s = 0.15 if quick else 0.4  # timed seconds per (op, version, size)

    def time(self, fn, torch_events: bool = False) -> tuple[float, float]:
        """(median seconds per call, first-call seconds) of ``fn()``, timed with CUDA events."""
        sync = self.torch.cuda.synchronize if torch_events else self.cupy.cuda.Device().synchronize
        t0 = time.perf_counter()
        fn()  # the first call compiles (NVRTC) and loads the module
        sync()
        first = time.perf_counter() - t0
        if torch_events:
            start, end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
        else:
            start, end = self.cupy.cuda.Event(), self.cupy.cuda.Event()

        def timed_call() -> float:
            start.record()
            fn()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end) if torch_events else self.cupy.cuda.get_elapsed_time(start, end)
            return ms / 1e3

        probe = min(timed_call() for _ in range(3))  # also the warm-up
        repeats = int(min(200, max(5, self.budget_s / max(probe, 1e-6))))
        return statistics.median(timed_call() for _ in range(repeats)), first

    def add(self, op, version, size, fn, work, unit, torch_events=False, compile_first=False, anchor=False,
            note=""):
        """Time ``fn`` and record a row; ``anchor=True`` makes it the ratio's denominator for (op, size)."""
        seconds, first = self.time(fn, torch_events)
        compile_s = max(first - seconds, 0.0) if compile_first else None
        row = Row(op, f"anchor: {version}" if anchor else version, size, seconds, work=work, unit=unit,
                  compile_s=compile_s, note=note)
        self.rows.append(row)
        if anchor:
            self.anchors[(op, size)] = seconds
        rate = f"{row.rate / 1e3:.2f} TFLOP/s" if unit == "GFLOP/s" else f"{row.rate:.0f} GB/s"
        print(f"  {op:22s} {row.version:34s} {size:18s} {seconds * 1e3:9.3f} ms  {rate}", flush=True)

    def set_ratios(self) -> None:
        """ratio = anchor time / row time, for rows whose (op, size) has an anchor."""
        for row in self.rows:
            anchor = self.anchors.get((row.op, row.size))
            row.ratio = anchor / row.time_s if anchor else None


# --------------------------------------------------------------------------- matmul


def bench_matmul(b: Bench, cuda):
    cp, torch = b.cupy, b.torch
    from minivl.kernels.cuda import sgemm

    rng = np.random.default_rng(0)
    small_a, small_b = (rng.standard_normal(s).astype(np.float32) for s in ((257, 129), (129, 65)))
    for version in sgemm.VERSIONS:  # validate every version on an odd shape first
        got = cp.asnumpy(cuda.matmul(cp.asarray(small_a), cp.asarray(small_b), version=version))
        check_close(got, reference.matmul(small_a, small_b), np.float32, f"matmul v{version} 257x129x65",
                    rtol=1e-4, atol=1e-4)
    compiled = False
    for n in b.sizes["matmul"]:
        size, flops = f"{n}x{n}x{n}", 2.0 * n**3
        a = cp.asarray(rng.standard_normal((n, n)), dtype=cp.float32)
        w = cp.asarray(rng.standard_normal((n, n)), dtype=cp.float32)
        want = cp.matmul(a, w)
        b.add("matmul", "cuBLAS (cupy.matmul, no TF32)", size, lambda a=a, w=w: cp.matmul(a, w), flops, "GFLOP/s",
              anchor=True)
        for version, spec in sgemm.VERSIONS.items():
            got = cuda.matmul(a, w, version=version)
            check_close(cp.asnumpy(got), cp.asnumpy(want), np.float32, f"matmul v{version} {size}",
                        rtol=1e-3, atol=1e-3 * math.sqrt(n))
            b.add("matmul", f"cuda v{version} {spec.name}", size, lambda a=a, w=w, v=version: cuda.matmul(a, w, v),
                  flops, "GFLOP/s", compile_first=not compiled)
            compiled = True
        if torch is not None:
            ta, tw = torch.as_tensor(a, device="cuda"), torch.as_tensor(w, device="cuda")
            b.add("matmul", "torch (no TF32)", size, lambda ta=ta, tw=tw: ta @ tw, flops, "GFLOP/s", torch_events=True)
        del a, w, want


# --------------------------------------------------------------------------- row-wise ops


def _torch_layer_norm(torch, tx, gamma, beta):
    tg, tb = torch.as_tensor(gamma, device="cuda"), torch.as_tensor(beta, device="cuda")
    return lambda: torch.nn.functional.layer_norm(tx, tx.shape[-1:], tg, tb)


def bench_rowwise(b: Bench, cuda):
    cp, torch = b.cupy, b.torch
    rows_n, cols = b.sizes["rowwise"]
    size = f"{rows_n}x{cols} fp32"
    rng = np.random.default_rng(1)
    small = rng.standard_normal((37, 1000)).astype(np.float32)
    check_close(cp.asnumpy(cuda.softmax_forward(cp.asarray(small))), reference.softmax_forward(small),
                np.float32, "softmax 37x1000")
    x = cp.asarray(rng.standard_normal((rows_n, cols)), dtype=cp.float32)
    dy = cp.asarray(rng.standard_normal((rows_n, cols)), dtype=cp.float32)
    gamma = cp.asarray(rng.standard_normal(cols), dtype=cp.float32)
    beta = cp.asarray(rng.standard_normal(cols), dtype=cp.float32)
    nbytes = x.nbytes

    def composed_softmax(t):
        e = cp.exp(t - t.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    y = cuda.softmax_forward(x)
    check_close(cp.asnumpy(y), cp.asnumpy(composed_softmax(x)), np.float32, f"softmax {size}", atol=1e-6)
    cases = [
        ("softmax_forward", 2 * nbytes, lambda: cuda.softmax_forward(x), lambda: composed_softmax(x),
         "torch.softmax", lambda tx, tdy, ty: (lambda: torch.softmax(tx, dim=-1))),
        ("softmax_backward", 3 * nbytes, lambda: cuda.softmax_backward(y, dy),
         lambda: y * (dy - (dy * y).sum(axis=-1, keepdims=True)),
         "torch._softmax_backward_data",
         lambda tx, tdy, ty: (lambda: torch._softmax_backward_data(tdy, ty, -1, torch.float32))),
        ("layer_norm_forward", 2 * nbytes, lambda: cuda.layer_norm_forward(x, gamma, beta), None,
         "torch layer_norm", lambda tx, tdy, ty: _torch_layer_norm(torch, tx, gamma, beta)),
        ("gelu_forward", 2 * nbytes, lambda: cuda.gelu_forward(x), None,
         "torch gelu", lambda tx, tdy, ty: (lambda: torch.nn.functional.gelu(tx))),
    ]
    _, mean, rstd = cuda.layer_norm_forward(x, gamma, beta)
    cases.append(("layer_norm_backward", 3 * nbytes, lambda: cuda.layer_norm_backward(dy, x, gamma, mean, rstd),
                  None, None, None))
    compiled = set()
    for op, work, ours, composed, torch_name, torch_fn in cases:
        if torch is not None and torch_fn is not None:
            tx, tdy, ty = (torch.as_tensor(t, device="cuda") for t in (x, dy, y))
            b.add(op, torch_name, size, torch_fn(tx, tdy, ty), work, "GB/s", torch_events=True, anchor=True)
        source = op.split("_")[0]
        b.add(op, "cuda", size, ours, work, "GB/s", compile_first=source not in compiled)
        compiled.add(source)
        if composed is not None:
            b.add(op, "cupy composed", size, composed, work, "GB/s")


# --------------------------------------------------------------------------- attention


def attention_flops(B, H, Nq, Nk, D, causal=False):
    """QK^T and PV: 2 matmuls of 2 B H Nq Nk D FLOPs each (half the pairs when causal)."""
    return 4.0 * B * H * Nq * Nk * D * (0.5 if causal else 1.0)


def bench_attention(b: Bench, cuda):
    cp, torch = b.cupy, b.torch
    rng = np.random.default_rng(2)
    # validate on a small odd shape, causal and padded, against the NumPy reference
    q, k, v = (rng.standard_normal((2, 3, n, 64)).astype(np.float32) for n in (77, 130, 130))
    mask = rng.random((2, 130)) > 0.2
    o_ref, lse_ref = reference.attention_forward(q, k, v, mask, True)
    o, lse = cuda.attention_forward(cp.asarray(q), cp.asarray(k), cp.asarray(v), cp.asarray(mask), True)
    check_close(cp.asnumpy(o), o_ref, np.float32, "attention fp32 77x130", atol=1e-5)
    do = rng.standard_normal(o_ref.shape).astype(np.float32)
    grads = cuda.attention_backward(*(cp.asarray(t) for t in (q, k, v, o_ref, lse_ref, do)), cp.asarray(mask), True)
    for got, want, name in zip(grads, reference.attention_backward(q, k, v, o_ref, lse_ref, do, mask, True), "qkv"):
        check_close(cp.asnumpy(got), want, np.float32, f"attention backward d{name}", rtol=1e-4, atol=1e-4)
    o16, _ = cuda.attention_forward_mma(*(cp.asarray(t.astype(np.float16)) for t in (q, k, v)), cp.asarray(mask), True)
    ref16, _ = reference.attention_forward(*(t.astype(np.float16).astype(np.float32) for t in (q, k, v)), mask, True)
    check_close(cp.asnumpy(o16).astype(np.float32), ref16, np.float32, "attention fp16 mma 77x130", atol=4e-3)

    B, H, N, D = b.sizes["attention"]
    size, flops = f"B{B} H{H} N{N} d{D}", attention_flops(B, H, N, N, D)
    q, k, v = (cp.asarray(rng.standard_normal((B, H, N, D)), dtype=cp.float32) for _ in range(3))
    ours = lambda: cuda.attention_forward(q, k, v)  # noqa: E731
    if torch is not None:
        tq, tk, tv = (torch.as_tensor(t, device="cuda") for t in (q, k, v))
        sdpa = torch.nn.functional.scaled_dot_product_attention
        check_close(cp.asnumpy(ours()[0]), sdpa(tq, tk, tv).cpu().numpy(), np.float32, f"attention {size}", atol=1e-4)
        b.add("attention_forward", "torch SDPA fp32", size, lambda: sdpa(tq, tk, tv), flops, "GFLOP/s",
              torch_events=True, anchor=True)
    b.add("attention_forward", "cuda fp32 (FA-2 style)", size, ours, flops, "GFLOP/s", compile_first=True)
    o, lse = ours()
    do = cp.asarray(rng.standard_normal((B, H, N, D)), dtype=cp.float32)
    b.add("attention_backward", "cuda fp32", size, lambda: cuda.attention_backward(q, k, v, o, lse, do),
          2.5 * flops, "GFLOP/s", note="FLOPs counted as 2.5x forward (FlashAttention convention)")

    q16, k16, v16 = (t.astype(cp.float16) for t in (q, k, v))
    ours16 = lambda: cuda.attention_forward_mma(q16, k16, v16)  # noqa: E731
    if torch is not None:
        tq, tk, tv = (torch.as_tensor(t, device="cuda") for t in (q16, k16, v16))
        want = sdpa(tq, tk, tv).float().cpu().numpy()
        check_close(cp.asnumpy(ours16()[0]).astype(np.float32), want, np.float32, f"attention fp16 {size}",
                    atol=5e-3)
        b.add("attention_forward_fp16", "torch SDPA fp16", size, lambda: sdpa(tq, tk, tv), flops, "GFLOP/s",
              torch_events=True, anchor=True)
    b.add("attention_forward_fp16", "cuda mma.sync fp16", size, ours16, flops, "GFLOP/s", compile_first=True)


def plot(rows: list[Row], path: Path, card: str) -> None:
    """Left: the SGEMM lesson, TFLOP/s per version and size. Right: every other kernel vs its anchor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    matmul = [r for r in rows if r.op == "matmul"]
    sizes = list(dict.fromkeys(r.size for r in matmul))
    versions = list(dict.fromkeys(r.version for r in matmul))
    width = 0.8 / max(len(sizes), 1)
    for i, size in enumerate(sizes):
        rate = {r.version: r.rate / 1e3 for r in matmul if r.size == size}
        left.bar([v + i * width for v in range(len(versions))], [rate.get(v, 0) for v in versions], width,
                 label=size)
    left.set_xticks([v + 0.4 - width / 2 for v in range(len(versions))])
    left.set_xticklabels([v.replace("anchor: ", "").split(" (")[0] for v in versions], rotation=35, ha="right",
                         fontsize=7)
    left.set_ylabel("TFLOP/s (fp32)")
    left.set_title("SGEMM, kernel by kernel", fontsize=10)
    left.legend(fontsize=8)
    others = [r for r in rows if r.op != "matmul" and r.ratio is not None and not r.version.startswith("anchor")]
    labels = [f"{r.op}: {r.version}" for r in others]
    right.barh(range(len(others)), [r.ratio for r in others], color="tab:green")
    right.axvline(1.0, color="k", lw=0.8)
    right.set_yticks(range(len(others)))
    right.set_yticklabels(labels, fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("speed relative to the anchor (torch); > 1 is faster")
    right.set_title("row-wise ops and attention", fontsize=10)
    fig.suptitle(f"minivl CUDA kernels on {card}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--json", type=Path, default=RESULTS / "kernels_gpu.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "kernels_gpu.png")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: check the sections and sizes, time nothing")
    args = parser.parse_args(argv)
    if args.dry_run:
        sizes = SIZES["quick" if args.quick else "full"]
        sections = ", ".join(f.__name__ for f in (bench_matmul, bench_rowwise, bench_attention))
        print(f"dry run: sections {sections}; sizes {sizes}; would write {args.json} and {args.png}")
        return

    cupy, cuda, torch = _import_gpu_stack()
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    card = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"bench_kernels_gpu on {card} (CuPy {cupy.__version__}, "
          f"torch {torch.__version__ if torch is not None else 'absent'}), quick={args.quick}")
    b = Bench(cupy, torch, args.quick)
    t0 = time.perf_counter()
    for section in (bench_matmul, bench_rowwise, bench_attention):
        print(f"{section.__name__}:", flush=True)
        section(b, cuda)
        cupy.get_default_memory_pool().free_all_blocks()
    b.set_ratios()
    print()
    print_table(b.rows, baseline="anchor")
    machine = machine_info(gpu=card, cupy=cupy.__version__, torch=None if torch is None else torch.__version__,
                           cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(), tf32="off")
    save_json(b.rows, args.json, machine=machine, quick=args.quick, seconds=time.perf_counter() - t0)
    plot(b.rows, args.png, card)
    print(f"\nwrote {args.json} and {args.png} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
