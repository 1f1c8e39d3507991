"""Data-parallel CLIP training over MPI: throughput with 1, 2 and 4 ranks on one
machine, and a scaling model for N machines (lectures/07-scale.md).

    python benchmarks/bench_scale_mpi.py [--ranks 1 2 4] [--steps 6] [--batch 64]

The script starts itself under ``mpiexec -n R`` for each R (one BLAS thread
per rank) and times CLIP training steps on a fixed global batch: every rank
embeds its shard, the embeddings are all-gathered for the InfoNCE over the
global batch, gradients are all-reduced in buckets. Rank 0 reports the median
step time, its forward + backward time, the time it then waits for the
gradient all-reduce (which includes waiting for a slower rank: on a shared
machine the ranks do not finish together), and the bytes each rank sends. Writes
benchmarks/results/scale_mpi_cpu.json and scale_mpi_cpu.png.

The scaling model. One step on one process costs ``C`` seconds of compute.
On N ranks the compute is ``C / N`` and each rank moves, with a ring
all-reduce of ``P`` bytes of gradients, ``2 (N-1)/N * P`` bytes, plus the
embedding all-gather and its reduce-scatter, ``2 * 2 (N-1)/N * E`` bytes
(E: one rank's image + text embeddings). With link bandwidth ``beta`` bytes/s
and per-message latency ``alpha``, and MPICH's algorithm for large messages
(Rabenseifner: a reduce-scatter by recursive halving, then an all-gather by
recursive doubling, so 2 log2 N latencies per collective; Thakur et al. 2005,
"Optimization of Collective Communication Operations in MPICH"):

    T(N) = C / N + 2 (N-1)/N * (P + 2E) / beta + 2 log2(N) * alpha * (buckets + 4)
    speed-up S(N) = C / T(N)

(the 4: two all-gathers of embeddings and their two reduce-scatters).

Overlap with backward would hide up to the backward share of ``C / N`` of
the communication; the model leaves that out (an upper bound on T).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BANDWIDTHS = {"1 Gbit/s": 1e9 / 8, "10 Gbit/s": 10e9 / 8, "100 Gbit/s": 100e9 / 8}
LATENCY_S = 20e-6  # a typical TCP/Ethernet MPI message latency


def worker(args):
    import minivl as mv
    from minivl.distributed import DataParallel, distributed_info_nce, init, shard
    from minivl.models.clip import CLIP

    comm = init(distributed=True)
    mv.manual_seed(0)
    model = CLIP(image_size=32, patch_size=8, vision_dim=64, vision_depth=2, vision_heads=4, vocab_size=256,
                 context_length=16, text_dim=64, text_depth=2, text_heads=4, embed_dim=64)
    dp = DataParallel(model, comm, bucket_bytes=args.bucket_bytes)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    ids = rng.integers(0, 255, (args.batch, 16))
    ids[:, -1] = 255
    my_images, my_ids = shard((images, ids), comm.rank, comm.size)
    times, waits, computes = [], [], []
    for step in range(args.steps + 1):
        comm.barrier()
        t0 = time.perf_counter()
        loss = distributed_info_nce(model.encode_image(my_images), model.encode_text(my_ids), model.logit_scale, comm)
        model.zero_grad()
        dp._ready, dp._pending = [0] * len(dp.buckets), []
        loss.backward(on_leaf_grad=dp._leaf_done)
        t1 = time.perf_counter()
        dp.finish()  # what is left of the gradient exchange after backward
        t2 = time.perf_counter()
        if step:  # the first step warms up
            times.append(t2 - t0)
            computes.append(t1 - t0)
            waits.append(t2 - t1)
    if comm.rank == 0:
        n = args.batch // comm.size
        print("RESULT " + json.dumps({
            "ranks": comm.size, "global_batch": args.batch, "step_s": float(np.median(times)),
            "compute_s": float(np.median(computes)), "allreduce_wait_s": float(np.median(waits)),
            "pairs_per_s": args.batch / float(np.median(times)),
            "gradient_bytes": dp.bytes_per_step, "buckets": len(dp.buckets),
            "embedding_bytes": 2 * n * model.config.embed_dim * 4}), flush=True)


def scaling_model(compute_s, gradient_bytes, embedding_bytes, buckets, ranks=(1, 2, 4, 8, 16, 32, 64)):
    out = {}
    for name, beta in BANDWIDTHS.items():
        rows = []
        for n in ranks:
            ring = 2 * (n - 1) / n
            latency = 2 * math.log2(n) * LATENCY_S * (buckets + 4)
            comm_s = ring * (gradient_bytes + 2 * embedding_bytes) / beta + latency
            t = compute_s / n + comm_s
            rows.append({"ranks": n, "step_s": t, "speedup": compute_s / t, "comm_s": comm_s})
        out[name] = rows
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bucket-bytes", type=int, default=1 << 18)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "scale_mpi_cpu.json"))
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    launcher = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    def launch(r, batch):
        command = [str(launcher), "-n", str(r), sys.executable, __file__, "--worker", "--steps", str(args.steps),
                   "--batch", str(batch), "--bucket-bytes", str(args.bucket_bytes)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode:
            raise SystemExit(f"mpiexec -n {r} failed:\n{proc.stderr[-3000:]}")
        return json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))

    runs = []
    for r in args.ranks:
        row = launch(r, args.batch)
        # One process on one rank's shard: the forward + backward each rank would take with a core to itself.
        row["shard_compute_one_process_s"] = launch(1, args.batch // r)["compute_s"]
        runs.append(row)
        print(f"{r} rank(s): {row['step_s'] * 1e3:7.1f} ms/step, {row['pairs_per_s']:6.1f} pairs/s, "
              f"forward + backward {row['compute_s'] * 1e3:6.1f} ms, "
              f"all-reduce wait after it {row['allreduce_wait_s'] * 1e3:5.1f} ms (one process on a shard: "
              f"{row['shard_compute_one_process_s'] * 1e3:5.1f} ms)", flush=True)
    base = runs[0]
    model = scaling_model(base["step_s"], base["gradient_bytes"], base["embedding_bytes"] * base["ranks"],
                          base["buckets"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": f"python benchmarks/bench_scale_mpi.py --ranks {' '.join(map(str, args.ranks))} "
                   f"--steps {args.steps} --batch {args.batch}",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "2-core machine shared with other jobs; 4 ranks are oversubscribed"},
        "mpi": "MPICH wheel from PyPI (shared memory within one machine)",
        "runs": runs, "latency_s": LATENCY_S, "scaling_model": model}, indent=1))
    plot(runs, model, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(runs, model, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].bar([str(r["ranks"]) for r in runs], [r["pairs_per_s"] for r in runs])
    axes[0].set_xlabel("ranks on one 2-core machine")
    axes[0].set_ylabel("CLIP training pairs / s")
    axes[0].set_title("measured throughput")
    for name, rows in model.items():
        axes[1].plot([r["ranks"] for r in rows], [r["speedup"] for r in rows], "o-", label=name)
    n = [r["ranks"] for r in next(iter(model.values()))]
    axes[1].plot(n, n, "k:", label="ideal")
    axes[1].set_xscale("log", base=2)
    axes[1].set_yscale("log", base=2)
    axes[1].set_xlabel("machines (one rank each)")
    axes[1].set_ylabel("speed-up")
    axes[1].set_title("scaling model (this step's compute and bytes)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
