"""The README's training-step tables, printed from benchmarks/results/train_cpu.json
(written by ``python benchmarks/bench_train.py --threads 1 2 --profile``), so every
figure quoted is one the benchmark measured: the ratios to torch, and (``--gaps``)
where each step's time goes (GEMMs, attention, everything else), numba against torch.

    python benchmarks/train_table.py [--json benchmarks/results/train_cpu.json] [--gaps]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_cpu.json"


def table(data):
    lines = ["| model | threads | numba / torch (wall) | numba / torch (CPU time) | numpy / torch (wall) |"
             " minivl numba ms | torch ms |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in data["results"].items():
        for key, row in r.items():
            if not key.startswith("threads_"):
                continue
            s = row["seconds"]
            lines.append(f"| {name} | {key[8:]} | {row['numba_over_torch']:.2f}x | "
                         f"{row['cpu_numba_over_torch']:.2f}x | {row['numpy_over_torch']:.2f}x | "
                         f"{1e3 * s['numba']:.1f} | {1e3 * s['torch']:.1f} |")
    return "\n".join(lines)


def top_ops(data, model, threads=1, n=4):
    prof = data.get("per_op_ms", {}).get(model, {}).get(f"threads_{threads}")
    if not prof:
        return ""
    out = []
    for backend in ("numba", "torch"):
        ops = [(k, v) for k, v in prof[backend].items() if k != "total"][:n]
        out.append(f"{backend}: " + ", ".join(f"{k} {v:.1f}" for k, v in ops))
    return "; ".join(out)


# Kinds of op in the per-op profiles: minivl's autograd nodes, torch's aten ops. Only
# the two that always stand among a profile's top entries: the profile keeps each
# backend's largest ops and lumps the others into "(rest)", so a small kind (torch's
# layer norm, its GELU where a model composes it of muls) cannot be told apart there.
KINDS = {
    "GEMM": (("Linear.", "MatMul."), ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    "attention": (("FusedAttention.",), ("aten::_scaled_dot_product",)),
}


def kind_ms(ops, side):
    """ms per step of each kind of op (and everything else) in one backend's profile."""
    out = {kind: 0.0 for kind in KINDS}
    for name, ms in ops.items():
        if name == "total":
            continue
        for kind, prefixes in KINDS.items():
            if name.startswith(prefixes[side]):
                out[kind] += ms
                break
    out["everything else"] = ops["total"] - sum(out.values())
    return out


def gaps(data, threads=1):
    """Per model: ms per step by kind of op, numba / torch, from the instrumented profile
    (its totals include the timers' own overhead, so they exceed the plain timings)."""
    kinds = list(KINDS) + ["everything else"]
    lines = ["| model | " + " | ".join(f"{k} (numba / torch ms)" for k in kinds) + " | total |",
             "| --- |" + " --- |" * (len(kinds) + 1)]
    for model, by_threads in data.get("per_op_ms", {}).items():
        prof = by_threads.get(f"threads_{threads}")
        if not prof:
            continue
        ours, theirs = kind_ms(prof["numba"], 0), kind_ms(prof["torch"], 1)
        cells = [f"{ours[k]:.1f} / {theirs[k]:.1f}" for k in kinds]
        lines.append(f"| {model} | " + " | ".join(cells)
                     + f" | {prof['numba']['total']:.1f} / {prof['torch']['total']:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--gaps", action="store_true", help="also print the time by kind of op")
    args = parser.parse_args()
    data = json.loads(args.json.read_text())
    print(table(data))
    if args.gaps:
        threads = sorted({int(k[8:]) for r in data["per_op_ms"].values() for k in r})
        for n in threads:
            print(f"\nms per step by kind of op, {n} thread(s), instrumented:\n{gaps(data, n)}")
    print(f"\nload average before / after: {data['load_average_before']} / {data['load_average_after']}")
    for model in data["results"]:
        print(f"{model} top ops (ms/step, 1 thread): {top_ops(data, model)}")


if __name__ == "__main__":
    main()
