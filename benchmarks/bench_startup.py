"""Start-up costs, each in a fresh Python process: ``import minivl``, and the first
call of every Numba kernel of the numba backend once its machine code is cached.

    python benchmarks/bench_startup.py [--repeats 5]

PERF.md's target: the first call of a cached Numba kernel in a new process
<= 0.3 s. Every kernel is first called once in a throwaway process (so that
``__pycache__`` holds its machine code); then each of ``--repeats`` new
processes calls every kernel once, in order, timing each call. The first
Numba kernel of a process also pays Numba's one-off start-up (its typing and
target registries, on the first dispatch of any kernel), reported apart as
``first_kernel_in_process_s``; the others show each kernel's own loading cost.
``import minivl`` is timed the same way, beside ``import minivl`` plus the
numba backend. Figures are medians. Writes benchmarks/results/startup_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "startup_cpu.json"

# op -> the call, on small float32 arrays; each runs in a new process after `setup`
SETUP = """
import time, numpy as np
t0 = time.perf_counter()
import minivl as mv
mv.use("numba")
b = mv.backend.get("numba")
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 64)).astype(np.float32)
g = np.ones(64, np.float32)
q = rng.standard_normal((2, 2, 16, 8)).astype(np.float32)
t_setup = time.perf_counter() - t0
"""
CALLS = {  # the first entry is the process's first Numba dispatch
    "softmax_forward": "b.softmax_forward(x)",
    "matmul (BLAS)": "b.matmul(x, x)",
    "log_softmax_forward": "b.log_softmax_forward(x)",
    "layer_norm_forward": "b.layer_norm_forward(x, g, g)",
    "layer_norm_backward": "b.layer_norm_backward(x, x, g, x.mean(-1), x.std(-1))",
    "gelu_forward": "b.gelu_forward(x)",
    "bias_gelu_forward": "b.bias_gelu_forward(x, g)",
    "bias_gelu_backward": "b.bias_gelu_backward(x, g, x)",
    "attention_forward (short rows)": "b.attention_forward(q, q, q, None, True)",
    "attention_forward (tiled)": "b.attention_forward(*(np.tile(q, (1, 1, 8, 1)),) * 3, None, True)",
}


def _python(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_calls():
    """``{op: seconds}`` of each kernel's first call, all in one new process, in order."""
    body = "\n".join(
        f"t0 = time.perf_counter(); {call}; out[{op!r}] = time.perf_counter() - t0" for op, call in CALLS.items())
    code = SETUP + "out = {}\n" + body + "\nimport json; print(json.dumps(out))\n"
    return _python(code)


def import_time(statement):
    code = f"""
import time
t0 = time.perf_counter()
{statement}
import json; print(json.dumps({{"s": time.perf_counter() - t0}}))
"""
    return _python(code)["s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    imports = {}
    for label, statement in [("import minivl", "import minivl"),
                             ("import minivl; use('numba')", "import minivl; minivl.use('numba')"),
                             ("import minivl.nn, functional, models.clip",
                              "import minivl.nn, minivl.functional, minivl.models.clip")]:
        import_time(statement)  # warm the file cache and Numba's index
        imports[label] = statistics.median(import_time(statement) for _ in range(args.repeats))
        print(f"{label:45} {1e3 * imports[label]:8.1f} ms")
    first_calls()  # compile (or load) everything once, so the timed processes find the cache
    runs = [first_calls() for _ in range(args.repeats)]
    calls = {op: statistics.median(r[op] for r in runs) for op in CALLS}
    for op in CALLS:
        print(f"first call of {op:35} {1e3 * calls[op]:8.1f} ms  (target <= 300 ms)")
    first_numba = next(iter(CALLS))
    later = {op: t for op, t in calls.items() if op != first_numba}
    worst = max(later, key=later.get)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/bench_startup.py " + " ".join(sys.argv[1:]),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "repeats": args.repeats, "import_s": imports, "first_call_cached_s": calls,
        "first_kernel_in_process_s": {"op": first_numba, "s": calls[first_numba],
                                      "note": "includes Numba's one-off start-up on its first dispatch"},
        "worst_later_first_call": {"op": worst, "s": later[worst], "target_s": 0.3, "met": later[worst] <= 0.3},
        "target_met_including_numba_startup": calls[first_numba] <= 0.3,
    }, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
