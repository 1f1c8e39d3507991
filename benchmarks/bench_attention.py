"""Benchmark: the attention ladder -- every rung validated, then timed.

The rungs (one line each in ``kernels/numba/attention_ladder.py`` and
``kernels/cuda/attention_ladder.py``): 1 naive (N x N scores), 2 online
softmax, 3 tiled flash forward, 4 flash backward, and on the GPU 5 the
tensor-core forward. As in llm.c's ``dev/cuda/attention_forward.cu``, each
rung is first checked against ``kernels/reference.py`` -- on a small odd case
(Nq 77, Nk 130, d 40, causal, padding) and at every timed size -- and only
then timed.

    python benchmarks/bench_attention.py --device cpu                  # Numba rungs 1-4 vs NumPy
    python benchmarks/bench_attention.py --device cpu --version 2      # one rung
    python benchmarks/bench_attention.py --device cpu --threads 1 --clock cpu
    python benchmarks/bench_attention.py --device gpu                  # CUDA rungs 1-5 (CuPy + a GPU)

CPU: median of repeats after a warm-up (JIT compile time is reported apart),
the ratio against NumPy's composed attention (``reference``: matmul, softmax,
matmul) on the same pass; ``--threads 1 --clock cpu`` times one thread in CPU
time, which other jobs on a shared machine cannot inflate. GPU: CUDA events,
median, the ratio against rung 1. FLOPs: 4 B H Nq Nk d for a forward pass
(two products), 2.5 times that for the backward. Writes
``benchmarks/results/attention_{cpu,gpu}.json`` and a PNG beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script in it runs: common.py is importable as is
from common import Row, add_ratios, check_close, machine_info, plot_rows, print_table, save_json, time_cpu
from minivl.kernels import reference as ref

RESULTS = Path(__file__).parent / "results"
SIZES = {  # (B, H, N, d), self-attention Nq = Nk = N
    "cpu": {"full": [(1, 4, 256, 64), (1, 4, 1024, 64)], "quick": [(1, 2, 128, 64), (1, 2, 256, 64)]},
    "gpu": {"full": [(4, 16, 1024, 64), (4, 16, 4096, 64)], "quick": [(2, 8, 1024, 64)]},
}


def forward_flops(B, H, Nq, Nk, d):
    return 4.0 * B * H * Nq * Nk * d


def small_case(rng):
    """The odd validation case: Nq != Nk, neither a tile multiple, causal, padding."""
    q = rng.standard_normal((2, 2, 77, 40)).astype(np.float32)
    k, v = (rng.standard_normal((2, 2, 130, 40)).astype(np.float32) for _ in range(2))
    mask = rng.random((2, 130)) < 0.8
    return q, k, v, mask, True


_REFERENCE: dict = {}  # id of q -> the reference (o, lse): one reference per case, however many rungs


def validate(rung, to_device, to_host, q, k, v, mask, causal, name):
    """Raise unless the rung matches the reference on (q, k, v, mask, causal)."""
    if id(q) not in _REFERENCE:
        _REFERENCE.clear()
        _REFERENCE[id(q)] = q, ref.attention_forward(q, k, v, mask, causal)  # (q kept: its id stays unique)
    o_ref, lse_ref = _REFERENCE[id(q)][1]
    mask_dev = None if mask is None else to_device(mask)
    if rung.op == "attention_backward":
        do = np.random.default_rng(1).standard_normal(o_ref.shape).astype(np.float32)
        got = rung.fn(*(to_device(t) for t in (q, k, v, o_ref, lse_ref, do)), mask_dev, causal)
        for g, want, label in zip(got, ref.attention_backward(q, k, v, o_ref, lse_ref, do, mask, causal), "qkv"):
            check_close(to_host(g), want, np.float32, f"{name} d{label}", rtol=1e-4, atol=1e-4)
        return
    if getattr(rung, "storage", "float32") == "float16":  # rung 5: the reference on the rounded inputs
        q, k, v = (t.astype(np.float16) for t in (q, k, v))
        o_ref, lse_ref = ref.attention_forward(*(t.astype(np.float32) for t in (q, k, v)), mask, causal)
        o, lse = rung.fn(*(to_device(t) for t in (q, k, v)), mask_dev, causal)
        check_close(to_host(o).astype(np.float32), o_ref, np.float32, f"{name} o", rtol=0, atol=4e-3)
        return
    o, lse = rung.fn(*(to_device(t) for t in (q, k, v)), mask_dev, causal)
    check_close(to_host(o), o_ref, np.float32, f"{name} o")
    check_close(to_host(lse), lse_ref, np.float32, f"{name} lse")


def run_cpu(args) -> list[Row]:
    from minivl.kernels.numba.attention_ladder import LADDER
    from threadpoolctl import threadpool_limits

    from minivl.threads import limit_threads

    if args.threads:
        limit_threads(numba=args.threads)  # minivl's threading layer too
    rungs = {n: r for n, r in LADDER.items() if args.version in (None, n)}
    rng = np.random.default_rng(0)
    same = lambda t: t  # noqa: E731 - CPU arrays need no transfer
    rows = []
    for n, rung in rungs.items():
        t0 = time.perf_counter()
        validate(rung, same, same, *small_case(rng), f"numba v{n}")  # the first call compiles
        print(f"validated numba v{n} ({rung.change}); first call {time.perf_counter() - t0:.2f} s", flush=True)
    for B, H, N, d in SIZES["cpu"]["quick" if args.quick else "full"]:
        size = f"B{B} H{H} N{N} d{d}"
        q, k, v, do = (rng.standard_normal((B, H, N, d)).astype(np.float32) for _ in range(4))
        o, lse = ref.attention_forward(q, k, v, None, args.causal)
        flops = forward_flops(B, H, N, N, d) / (2 if args.causal else 1)
        calls = {"attention_forward": (q, k, v, None, args.causal),
                 "attention_backward": (q, k, v, o, lse, do, None, args.causal)}
        work = {"attention_forward": flops, "attention_backward": 2.5 * flops}
        with threadpool_limits(args.threads or None):
            for op in dict.fromkeys(r.op for r in rungs.values()):
                seconds = time_cpu(getattr(ref, op), *calls[op], repeats=args.repeats, clock=args.clock)
                rows.append(Row(op, "numpy", size, seconds, work=work[op]))
        for n, rung in rungs.items():
            validate(rung, same, same, q, k, v, None, args.causal, f"numba v{n} {size}")
            seconds = time_cpu(rung.fn, *calls[rung.op], repeats=args.repeats, clock=args.clock)
            rows.append(Row(rung.op, f"numba v{n}", size, seconds, work=work[rung.op], note=rung.change))
            print(f"  numba v{n} {size}: {seconds * 1e3:.1f} ms", flush=True)
    add_ratios(rows, baseline="numpy")
    return rows


def run_gpu(args) -> list[Row]:
    try:
        import cupy
    except ImportError:
        raise SystemExit("bench_attention: --device gpu needs CuPy and a CUDA device") from None
    from minivl.kernels.cuda.attention_ladder import LADDER

    def timed(fn, *a):
        fn(*a)  # compile and load
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(args.repeats):
            start.record()
            fn(*a)
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
        return statistics.median(times)

    rungs = {n: r for n, r in LADDER.items() if args.version in (None, n)}
    rng = np.random.default_rng(0)
    for n, rung in rungs.items():
        validate(rung, cupy.asarray, cupy.asnumpy, *small_case(rng), f"cuda v{n}")
        print(f"validated cuda v{n} ({rung.change})", flush=True)
    rows = []
    for B, H, N, d in SIZES["gpu"]["quick" if args.quick else "full"]:
        size = f"B{B} H{H} N{N} d{d}"
        host = [rng.standard_normal((B, H, N, d)).astype(np.float32) for _ in range(4)]
        o, lse = ref.attention_forward(*host[:3], None, args.causal)
        flops = forward_flops(B, H, N, N, d) / (2 if args.causal else 1)
        for n, rung in rungs.items():
            validate(rung, cupy.asarray, cupy.asnumpy, *host[:3], None, args.causal, f"cuda v{n} {size}")
            dtype = np.float16 if rung.storage == "float16" else np.float32
            q, k, v, do = (cupy.asarray(t.astype(dtype)) for t in host)
            if rung.op == "attention_backward":
                call, work = (q, k, v, cupy.asarray(o), cupy.asarray(lse), do, None, args.causal), 2.5 * flops
            else:
                call, work = (q, k, v, None, args.causal), flops
            seconds = timed(rung.fn, *call)
            version = f"cuda v{n}" + (" fp16" if dtype == np.float16 else "")
            rows.append(Row(rung.op, version, size, seconds, work=work, note=rung.change))
            print(f"  {version} {size}: {seconds * 1e3:.3f} ms", flush=True)
    base = {(r.op, r.size): r.time_s for r in rows if r.version.startswith("cuda v1")}
    for r in rows:  # the forward rungs against rung 1; the backward has no naive rung
        r.ratio = base[(r.op, r.size)] / r.time_s if (r.op, r.size) in base else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--version", type=int, help="one rung only (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for Numba and BLAS (0: all)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="CPU timing clock")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="JSON path without suffix (default benchmarks/results/attention_<device>)")
    args = parser.parse_args()
    rows = run_cpu(args) if args.device == "cpu" else run_gpu(args)
    baseline = "numpy" if args.device == "cpu" else "cuda v1"
    print_table(rows, baseline=baseline)
    out = Path(args.out) if args.out else RESULTS / f"attention_{args.device}"
    meta = {"threads": args.threads or "all", "clock": args.clock, "causal": args.causal}
    save_json(rows, out.with_suffix(".json"), machine=machine_info(), **meta)
    plot_rows(rows, out.with_suffix(".png"), baseline=baseline, title="attention ladder", ncols=2)
    print(f"wrote {out.with_suffix('.json')} and .png")


if __name__ == "__main__":
    main()
