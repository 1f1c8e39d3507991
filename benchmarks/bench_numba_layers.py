"""What it costs to enter a Numba parallel kernel on each threading layer, at one and two threads.

minivl picks Numba's threading layer by thread count (``minivl/threads.py``): the
OpenMP layer at one thread, ``workqueue`` at more. This measures why, each case in
a fresh process (the layer is fixed when Numba first starts its threads): the
time of a near-empty ``parallel=True`` kernel (a prange over 64 floats), wall and
process CPU time per call, medians of blocks of 2,000 calls.

    python benchmarks/bench_numba_layers.py [--out benchmarks/results/numba_layers_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "numba_layers_cpu.json"

CHILD = """
import json, statistics, sys, time
import numba, numpy as np
numba.set_num_threads({threads})
@numba.njit(parallel=True)
def step(x):
    for i in numba.prange(x.shape[0]):
        x[i] += 1.0
x = np.zeros(64, np.float32)
step(x)
walls, cpus = [], []
for _ in range(7):
    w, c = time.perf_counter(), time.process_time()
    for _ in range(2000):
        step(x)
    walls.append((time.perf_counter() - w) / 2000)
    cpus.append((time.process_time() - c) / 2000)
print(json.dumps({{"layer": numba.threading_layer(), "wall_us": 1e6 * statistics.median(walls),
                  "cpu_us": 1e6 * statistics.median(cpus)}}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for layer in ("omp", "workqueue"):
        for threads in (1, 2):
            env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
            out = subprocess.run([sys.executable, "-c", CHILD.format(threads=threads)], env=env,
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{layer}, {threads} thread(s): not available ({out.stderr.strip().splitlines()[-1]})")
                continue
            row = {"requested_layer": layer, "threads": threads, **json.loads(out.stdout)}
            rows.append(row)
            print(f"{layer:9} {threads} thread(s): {row['wall_us']:7.2f} us wall, {row['cpu_us']:7.2f} us CPU per call")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python benchmarks/bench_numba_layers.py", "cores": os.cpu_count(),
                                    "load_average_after": os.getloadavg(), "rows": rows}, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
