"""The README's training-step table, printed from benchmarks/results/train_cpu.json
(written by ``python benchmarks/bench_train.py --threads 1 2 --profile``), so every
figure quoted is one the benchmark measured.

    python benchmarks/train_table.py [--json benchmarks/results/train_cpu.json]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = json.loads(args.json.read_text())
    print(table(data))
    print(f"\nload average before / after: {data['load_average_before']} / {data['load_average_after']}")
    for model in data["results"]:
        print(f"{model} top ops (ms/step, 1 thread): {top_ops(data, model)}")


if __name__ == "__main__":
    main()
