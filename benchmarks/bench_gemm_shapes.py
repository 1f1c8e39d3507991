"""The GEMMs of one training step, NumPy's BLAS against PyTorch's, at one thread.

``bench_train.py``'s per-op breakdown shows minivl's ``Linear`` taking longer than
torch's ``mm`` + ``addmm`` for the same model, though ``Linear`` is one BLAS call
per product and nothing else. This script times exactly those products, the
shapes of the benchmark models' layers (rows = batch x tokens), each as its
forward ``y = x W^T`` and its two backward products ``dx = dy W`` and
``dW = dy^T x``, on NumPy's BLAS (OpenBLAS in the PyPI wheel) and on torch's CPU
BLAS (oneMKL in the PyPI wheel), in this process's CPU time:

    python benchmarks/bench_gemm_shapes.py [--repeats 30] [--out benchmarks/results/gemm_shapes_cpu.json]

The ratio is the floor under any minivl model whose step is mostly GEMMs: minivl
calls NumPy's BLAS, so where OpenBLAS is slower than MKL on a shape, minivl is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import machine_info, time_cpu  # benchmarks/ is on sys.path when a script in it runs

RESULTS = Path(__file__).resolve().parent / "results" / "gemm_shapes_cpu.json"

# (model, layer, rows, in, out): bench_train.py's cases
SHAPES = [
    ("vit", "qkv", 64 * 65, 64, 192), ("vit", "attn out", 64 * 65, 64, 64),
    ("vit", "fc1", 64 * 65, 64, 256), ("vit", "fc2", 64 * 65, 256, 64),
    ("bert", "qkv", 32 * 32, 64, 192), ("bert", "fc1", 32 * 32, 64, 256), ("bert", "fc2", 32 * 32, 256, 64),
    ("bert", "mlm head", 32 * 32, 64, 400),
    ("gpt", "fc1", 32 * 48, 64, 256), ("gpt", "lm head", 32 * 48, 64, 400),
    ("dalle", "fc1", 8 * 272, 64, 256), ("dalle", "image head", 8 * 256, 64, 256),
]


def main():
    import json

    import torch
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    threadpool_limits(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows, totals = [], {"numpy": 0.0, "torch": 0.0}
    print(f"{'model':6} {'layer':11} {'shape (rows, in, out)':>22} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6}")
    for model, layer, m, k, n in SHAPES:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        dy = rng.standard_normal((m, n)).astype(np.float32)
        tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)

        def three_products(x, w, dy):  # forward, dx, dW
            x @ w.T
            dy @ w
            dy.T @ x

        np.testing.assert_allclose((dy.T @ x), (tdy.T @ tx).numpy(), rtol=1e-3, atol=1e-2)
        t = {"numpy": time_cpu(three_products, x, w, dy, repeats=args.repeats, clock="cpu"),
             "torch": time_cpu(three_products, tx, tw, tdy, repeats=args.repeats, clock="cpu")}
        for key in totals:
            totals[key] += t[key]
        rows.append({"model": model, "layer": layer, "rows": m, "in": k, "out": n,
                     "numpy_ms": 1e3 * t["numpy"], "torch_ms": 1e3 * t["torch"],
                     "numpy_over_torch": t["numpy"] / t["torch"]})
        print(f"{model:6} {layer:11} {str((m, k, n)):>22} {1e3 * t['numpy']:9.3f} {1e3 * t['torch']:9.3f} "
              f"{t['numpy'] / t['torch']:6.2f}")
    ratio = totals["numpy"] / totals["torch"]
    print(f"all shapes: numpy (OpenBLAS) / torch (MKL) = {ratio:.2f}")
    blas = torch.__config__.show()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/bench_gemm_shapes.py" + (f" --repeats {args.repeats}"),
        "machine": machine_info(torch=torch.__version__,
                                torch_blas="MKL" if "Math Kernel Library" in blas else "other"),
        "clock": "process CPU time, one thread", "repeats": args.repeats,
        "rows": rows, "numpy_over_torch_all_shapes": ratio,
    }, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
