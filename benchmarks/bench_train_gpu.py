"""One training step of each lecture model on the GPU: minivl on the cuda backend
(its own CUDA kernels, parameters and activations as CuPy arrays) against the
*same* model in PyTorch on the GPU, and against minivl on the CPU (numba).

The models, weights and batches are ``bench_train.py``'s (Hugging Face models
from tiny configs, loaded into minivl with ``from_hf``); the torch model moves
with ``.cuda()``, ours with ``model.to("cuda")`` and ``mv.to_device``. Before
anything is timed, the minivl loss on the GPU must equal torch's (rtol 1e-3:
TF32 is off on both sides, the kernels sum in another order).

    python benchmarks/bench_train_gpu.py --out DIR [--models clip gpt bert vit] [--repeats 20]
    python benchmarks/bench_train_gpu.py --dry-run   # no GPU needed: builds the cases, parses the args

GPU steps are timed with a device synchronise around each step (a step is
many small launches, so CUDA events around one stream would say the same);
medians of interleaved rounds as on the CPU. Writes ``DIR/train_gpu.json`` and
``DIR/train_gpu.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("CUPY_TF32", "0")  # fp32 GEMMs without TF32, as torch below

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (benchmarks/ is not a package)

import minivl as mv  # noqa: E402
from minivl.optim import AdamW  # noqa: E402


def gpu_steppers(name, torch, cupy):
    """``{"minivl cuda", "torch cuda", "minivl cpu"}`` step functions, validated first."""
    torch.manual_seed(0)
    mv.manual_seed(0)
    hf, ours, torch_fn, minivl_fn, torch_in, minivl_in = bench_train.CASES[name][0](np.random.default_rng(0))
    mv.use("numba")
    cpu_opt = AdamW(ours.parameters(), lr=1e-4)
    with mv.no_grad():
        cpu_loss = float(minivl_fn(*minivl_in).item())

    hf_gpu = hf.cuda()
    torch_gpu_in = tuple(t.cuda() for t in torch_in)
    # a second minivl model for the GPU, from the same weights
    mv.manual_seed(0)
    _, ours_gpu, _, minivl_gpu_fn, _, _ = bench_train.CASES[name][0](np.random.default_rng(0))
    ours_gpu.load_state_dict(ours.state_dict())
    mv.use("cuda")
    ours_gpu.to("cuda")
    minivl_gpu_in = mv.to_device(minivl_in, "cuda")
    with torch.no_grad():
        want = float(torch_fn(*torch_gpu_in))
    with mv.no_grad():
        got = float(minivl_gpu_fn(*minivl_gpu_in).item())
    if not np.isclose(got, want, rtol=1e-3, atol=1e-4):
        raise AssertionError(f"{name}: minivl cuda loss {got} != torch cuda loss {want}; not timing it")
    torch_opt = torch.optim.AdamW(hf_gpu.parameters(), lr=1e-4)
    gpu_opt = AdamW(ours_gpu.parameters(), lr=1e-4)

    def minivl_gpu():
        mv.use("cuda")
        gpu_opt.zero_grad()
        minivl_gpu_fn(*minivl_gpu_in).backward()
        gpu_opt.step()
        cupy.cuda.Device().synchronize()

    def torch_gpu():
        torch_opt.zero_grad()
        torch_fn(*torch_gpu_in).backward()
        torch_opt.step()
        torch.cuda.synchronize()

    def minivl_cpu():
        mv.use("numba")
        cpu_opt.zero_grad()
        minivl_fn(*minivl_in).backward()
        cpu_opt.step()

    return {"minivl cuda": minivl_gpu, "torch cuda": torch_gpu, "minivl cpu": minivl_cpu}, {
        "loss_gpu": got, "loss_torch_gpu": want, "loss_cpu": cpu_loss}


def medians(steps, repeats, rounds=4):
    times = {k: [] for k in steps}
    for fn in steps.values():
        fn()  # JIT, NVRTC, allocator warm-up
    for r in range(rounds):
        names = list(steps)
        for k in names[r % len(names):] + names[:r % len(names)]:
            steps[k]()
            for _ in range(max(1, repeats // rounds)):
                t0 = time.perf_counter()
                steps[k]()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    contenders = ["minivl cuda", "torch cuda", "minivl cpu"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.27
    for i, c in enumerate(contenders):
        ax.bar(np.arange(len(names)) + (i - 1) * width, [1e3 * rows[n]["seconds"][c] for n in names], width, label=c)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("ms per training step")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("one training step (forward, backward, AdamW)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "benchmarks/results/gpu")),
                        help="folder for train_gpu.json and train_gpu.png (default: $OUT or benchmarks/results/gpu)")
    parser.add_argument("--models", nargs="+", default=list(bench_train.CASES), choices=list(bench_train.CASES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: build each case on the CPU and check the entry points, time nothing")
    args = parser.parse_args(argv)
    if args.dry_run:
        for name in args.models:
            bench_train.CASES[name][0](np.random.default_rng(0))
        print(f"dry run: {len(args.models)} cases build; would write {args.out / 'train_gpu.json'}")
        return 0
    import cupy
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_train_gpu: torch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    bench_train.set_threads(os.cpu_count() or 1)  # the CPU contender at full width
    rows, failed = {}, {}
    for name in args.models:
        try:
            steps, losses = gpu_steppers(name, torch, cupy)
            t = medians(steps, args.repeats)
        except Exception as err:  # noqa: BLE001 - one model failing must not hide the others
            failed[name] = f"{type(err).__name__}: {err}"
            print(f"{name}: FAILED {failed[name]}")
            continue
        rows[name] = {"seconds": t, **losses,
                      "minivl_cuda_over_torch_cuda": t["minivl cuda"] / t["torch cuda"],
                      "minivl_cpu_over_minivl_cuda": t["minivl cpu"] / t["minivl cuda"]}
        print(f"{name:5} minivl cuda {1e3 * t['minivl cuda']:8.2f} ms  torch cuda {1e3 * t['torch cuda']:8.2f} ms  "
              f"minivl cpu {1e3 * t['minivl cpu']:8.2f} ms  (minivl/torch on GPU "
              f"{rows[name]['minivl_cuda_over_torch_cuda']:.2f}x)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_gpu.json").write_text(json.dumps({
        "command": "python benchmarks/bench_train_gpu.py " + " ".join(sys.argv[1:]),
        "gpu": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "torch": torch.__version__, "cupy": cupy.__version__, "cpu_threads": os.cpu_count(),
        "repeats": args.repeats, "results": rows, "failed": failed}, indent=2))
    if rows:
        plot(rows, args.out / "train_gpu.png")
    print(f"saved {args.out / 'train_gpu.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
