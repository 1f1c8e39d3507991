"""Attention that scales with the image (lecture S01): global attention, Swin's
shifted windows and PVT's spatial reduction in the shared vision encoder.

Two measurements, written to benchmarks/results/attention_scaling_cpu.json
(+ attention_scaling_cpu.png):

1. time and peak memory of one forward + backward of a small encoder (patch 4,
   width 32, 2 blocks, 2 heads, batch 1) at 32, 64, 128 and 256 px, i.e. 64 to
   4,096 tokens. Swin uses 4 x 4-patch windows; PVT reduces the keys to an 8 x 8
   map (sr_ratio = grid / 8, as PVT's first stage reduces 56 x 56 to 7 x 7), so
   both are linear in the number of tokens, while global attention's score
   matrix grows with its square. Memory is tracemalloc's peak of NumPy's
   allocations during the step (the activations kept for backward).
2. test accuracy of a ViT with each attention on the shapes task at 64 px
   (8 px patches: an 8 x 8 grid; Swin windows of 4 x 4 patches; PVT
   sr_ratio 2), same steps and seed for all three.

    python benchmarks/bench_attention_scaling.py [--sizes 32 64 128 256] [--steps 150] [--repeats 3]

Times are wall-clock medians on whatever machine runs it; the committed JSON
records the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

import minivl as mv
from minivl.models.vision import VisionEncoder
from minivl.recipes.vit import shapes_task, train_vit

RESULTS = Path(__file__).resolve().parent / "results"
ATTENTIONS = ("global", "swin", "pvt")


def encoder(attention, image_size, patch_size=4, dim=32, depth=2, heads=2):
    grid = image_size // patch_size
    return VisionEncoder(image_size=image_size, patch_size=patch_size, in_channels=3, dim=dim, depth=depth,
                         num_heads=heads, attention=attention, window_size=4, sr_ratio=max(1, grid // 8))


def one_step(model, images):
    out = model(images)  # (1, 1+N, D)
    (out * out).mean().backward()
    model.zero_grad()


def measure(attention, image_size, repeats):
    mv.manual_seed(0)
    model = encoder(attention, image_size)
    images = np.random.default_rng(0).standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    one_step(model, images)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one_step(model, images)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    one_step(model, images)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"attention": attention, "image_size": image_size, "tokens": (image_size // 4) ** 2,
            "time_s": float(np.median(times)), "peak_mib": peak / 2**20}


def accuracy_at_64(steps, seed=0):
    task = shapes_task(n_train=3000, n_test=600, image_size=64, patch_size=8, seed=seed)
    rows = []
    for attention in ATTENTIONS:
        result = train_vit(task, steps=steps, attention=attention, seed=seed, eval_every=steps, progress=True)
        m = result["metrics"]
        rows.append({"attention": attention, "test_accuracy": m["test_accuracy"], "steps": steps,
                     "train_seconds": m["train_seconds"], "parameters": m["parameters"]})
        print(f"{attention:>6}: shapes at 64 px, test accuracy {m['test_accuracy']:.3f} "
              f"after {steps} steps ({m['train_seconds']:.0f} s)")
    return rows


def plot(scaling, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for attention in ATTENTIONS:
        rows = [r for r in scaling if r["attention"] == attention]
        tokens = [r["tokens"] for r in rows]
        axes[0].loglog(tokens, [r["time_s"] for r in rows], "o-", label=attention)
        axes[1].loglog(tokens, [r["peak_mib"] for r in rows], "o-", label=attention)
    for ax, title in zip(axes, ("forward + backward time (s)", "peak memory (MiB)")):
        ax.set_xlabel("patch tokens (32 to 256 px, 4 px patches)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150, help="training steps of each ViT at 64 px (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "attention_scaling_cpu.json"))
    args = parser.parse_args()
    scaling = []
    for size in args.sizes:
        for attention in ATTENTIONS:
            row = measure(attention, size, args.repeats)
            scaling.append(row)
            print(f"{attention:>6} {size:4d} px {row['tokens']:5d} tokens: {row['time_s'] * 1e3:8.1f} ms, "
                  f"peak {row['peak_mib']:8.1f} MiB", flush=True)
    accuracy = accuracy_at_64(args.steps) if args.steps else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/bench_attention_scaling.py " + " ".join(
            [f"--sizes {' '.join(map(str, args.sizes))}", f"--repeats {args.repeats}", f"--steps {args.steps}"]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "note": "2-core machine shared with other jobs"},
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "backend": str(getattr(mv.backend.current(), "name", mv.backend.current())),
        "scaling": scaling, "accuracy_64px": accuracy}, indent=1))
    plot(scaling, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
