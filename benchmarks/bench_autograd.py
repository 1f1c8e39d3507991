"""Autograd overhead: one transformer block, forward + backward, in minivl and in
PyTorch eager on the CPU, measured side by side in one run; plus the fixed cost
of one tiny op (where Python overhead is everything).

    python benchmarks/bench_autograd.py [--batch 32 --seq 64 --width 128 --heads 4]

Prints a table with the ratio minivl / torch (lower is better; the target is
<= 1.5, the stretch 1.0) and saves benchmarks/results/autograd_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script in it runs
from common import time_cpu

import minivl as mv
from minivl import nn


def median_time(fn, repeats=20, warmup=3):
    """Median seconds per call (``common.time_cpu``: warm-up excluded, thread pools settled)."""
    return time_cpu(fn, repeats=repeats, warmup=warmup)


def minivl_block_step(args, backend):
    mv.use(backend)
    mv.manual_seed(0)
    block = nn.TransformerBlock(args.width, args.heads, activation="gelu_tanh")
    x = mv.tensor(np.random.default_rng(0).standard_normal((args.batch, args.seq, args.width)).astype(np.float32),
                  requires_grad=True)

    def step():
        block.zero_grad()
        block(x, causal=True).sum().backward()

    return step


def torch_block_step(args):
    import torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(args.width, args.heads, 4 * args.width, dropout=0.0,
                                             activation=lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
                                             batch_first=True, norm_first=True)
    x = torch.randn(args.batch, args.seq, args.width, requires_grad=True)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(args.seq)

    def step():
        layer.zero_grad()
        layer(x, src_mask=mask, is_causal=True).sum().backward()

    return step


def tiny_op_steps():
    a = mv.tensor(np.ones(4, np.float32), requires_grad=True)

    def ours():
        (a * a + a).sum().backward()

    steps = {"minivl": ours}
    try:
        import torch

        t = torch.ones(4, requires_grad=True)

        def theirs():
            (t * t + t).sum().backward()

        steps["torch"] = theirs
    except ImportError:
        pass
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "autograd_cpu.json"))
    args = ap.parse_args()

    rows = []
    try:
        import torch

        torch.set_num_threads(2)
        t_torch = median_time(torch_block_step(args), args.repeats)
        rows.append(("block fwd+bwd", "torch eager", t_torch))
    except ImportError:
        t_torch = None
    for backend in ("numpy", "numba"):
        try:
            t = median_time(minivl_block_step(args, backend), args.repeats)
            rows.append(("block fwd+bwd", f"minivl {backend}", t))
        except Exception as e:  # noqa: BLE001 - a backend missing here is reported, not fatal
            print(f"(skipping minivl {backend}: {e})")
    mv.use("numpy")
    tiny = {name: median_time(fn, 200, 20) for name, fn in tiny_op_steps().items()}
    for name, t in tiny.items():
        rows.append(("tiny op x3 fwd+bwd", name, t))

    shape = f"B={args.batch} N={args.seq} D={args.width} H={args.heads}"
    print(f"\nTransformer block ({shape}), {platform.processor() or platform.machine()}, median of {args.repeats}")
    print(f"{'what':<20} {'version':<16} {'time':>10} {'ratio to torch':>15}")
    for what, version, t in rows:
        anchor = t_torch if what.startswith("block") else tiny.get("torch")
        ratio = f"{t / anchor:.2f}x" if anchor else "-"
        unit = f"{t * 1e3:8.2f} ms" if t > 1e-3 else f"{t * 1e6:8.1f} us"
        print(f"{what:<20} {version:<16} {unit:>10} {ratio:>15}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "machine": platform.platform(), "shape": shape,
        "rows": [{"what": w, "version": v, "seconds": t} for w, v, t in rows],
    }, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
