"""Where a parallel Numba kernel starts to beat its serial build, at two threads on the workqueue layer.

minivl compiles every parallel kernel twice (``kernels/numba/_parallel.py``) and runs the
serial build for calls below ``SERIAL_BELOW`` elements of work: entering a parallel
kernel on the ``workqueue`` layer wakes the sleeping workers (``bench_numba_layers.py``).
This times softmax, layer norm and exact GELU, forward and backward, over rows of 64 and
256 floats at sizes from 1,024 to 1,048,576 elements, serial build against parallel
build (both forced, ``forced_build``), in one process at two Numba threads with the
layer minivl picks for two threads; medians of 7 blocks of calls. Then one use made of
small calls only: greedy sampling of 32 tokens from a lecture-sized GPT with the
key/value cache, with each build forced and with the per-call pick.

    python benchmarks/bench_serial_kernels.py [--out benchmarks/results/serial_kernels_cpu.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "serial_kernels_cpu.json"
SIZES = [2**k for k in range(10, 21, 2)]


def _time(fn, min_seconds=0.02):
    """median seconds per call of ``fn`` over 7 blocks of calls"""
    fn()
    calls = 1
    while True:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - t > min_seconds:
            break
        calls *= 2
    blocks = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        blocks.append((time.perf_counter() - t) / calls)
    return statistics.median(blocks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from minivl.threads import limit_threads

    limit_threads(args.threads, args.threads)  # BLAS and Numba; the layer is picked before Numba starts
    import numba
    import numpy as np
    from minivl.kernels.numba import gelu, layer_norm, softmax
    from minivl.kernels.numba._parallel import SERIAL_BELOW, SERIAL_BELOW_LIGHT, forced_build

    rng = np.random.default_rng(0)
    ops = {
        "softmax_forward": lambda x, g, dy: softmax.softmax_forward(x),
        "softmax_backward": lambda x, g, dy: softmax.softmax_backward(x, dy),
        "layer_norm_forward": lambda x, g, dy: layer_norm.layer_norm_forward(x, g, g),
        "gelu_forward": lambda x, g, dy: gelu.gelu_forward(x),
        "gelu_backward": lambda x, g, dy: gelu.gelu_backward(x, dy),
    }
    rows = []
    for width in (64, 256):
        for size in SIZES:
            x = rng.standard_normal((size // width, width)).astype(np.float32)
            dy = rng.standard_normal(x.shape).astype(np.float32)
            g = np.ones(width, np.float32)
            for name, op in ops.items():
                times = {}
                for build in ("serial", "parallel"):
                    with forced_build(build):
                        times[build] = _time(lambda op=op, x=x, g=g, dy=dy: op(x, g, dy))
                row = {"op": name, "width": width, "elements": size, "serial_us": 1e6 * times["serial"],
                       "parallel_us": 1e6 * times["parallel"],
                       "parallel_over_serial": times["parallel"] / times["serial"]}
                rows.append(row)
                print(f"{name:20} width {width:3} {size:8} elements: serial {row['serial_us']:9.1f} us, "
                      f"parallel {row['parallel_us']:9.1f} us ({row['parallel_over_serial']:.2f}x)")
    # per op and width: the smallest size from which the parallel build is faster at every size
    crossing = {}
    for r in rows:
        key = f"{r['op']}, width {r['width']}"
        wins = [s for s in SIZES if all(q["parallel_over_serial"] < 1 for q in rows
                                        if q["op"] == r["op"] and q["width"] == r["width"] and q["elements"] >= s)]
        crossing[key] = min(wins) if wins else None
    for key, size in crossing.items():
        print(f"{key}: parallel wins from {size} elements")
    print(f"(SERIAL_BELOW = {SERIAL_BELOW}, SERIAL_BELOW_LIGHT = {SERIAL_BELOW_LIGHT})")
    # a whole use where every call is small: sampling 32 tokens with the key/value cache from the
    # lecture-sized GPT (one prompt of 8 tokens), each build forced, and the automatic pick
    import minivl as mv
    from minivl.models.gpt import GPT

    mv.use("numba")
    gpt = GPT(vocab_size=400, max_len=64, dim=64, depth=2, num_heads=4).eval()
    prompt = rng.integers(0, 400, (1, 8))
    sample = lambda: gpt.generate(prompt, 32, temperature=0)  # noqa: E731
    sampling = {}
    for build in ("serial", "parallel", None):
        with forced_build(build) if build else contextlib.nullcontext():
            sampling[build or "picked"] = 1e3 * _time(sample, min_seconds=0.2)
    print("GPT sampling, 32 tokens: " + ", ".join(f"{k} {v:.1f} ms" for k, v in sampling.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/bench_serial_kernels.py"
                   + (f" --threads {args.threads}" if args.threads != 2 else ""),
        "cores": os.cpu_count(), "threads": numba.get_num_threads(), "layer": numba.threading_layer(),
        "serial_below": SERIAL_BELOW, "serial_below_light": SERIAL_BELOW_LIGHT, "parallel_wins_from": crossing,
        "gpt_sampling_32_tokens_ms": sampling,
        "load_average_after": os.getloadavg(), "rows": rows}, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
