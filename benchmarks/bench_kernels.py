"""Benchmark: the CPU kernels -- NumPy reference vs Numba (vs PyTorch CPU, if installed).

For each op and size, llm.c style: every version is first validated against
``kernels/reference.py``, then timed (median of repeats, warm-up excluded;
float32). Reported: time, GFLOP/s (matmul, attention) or effective GB/s
(bytes read + written once: the memory-bound ops), and the ratio to NumPy.

JIT compile time is measured apart, in fresh subprocesses with an empty
Numba cache directory: "cold" (first process: compiles every kernel) and
"cached" (a second process: loads machine code from the cache; the target is
<= 0.3 s for the first call of a cached kernel).

Threads: Numba uses every core (2 here), OpenBLAS and torch likewise; each
implementation is timed on its own, after a pause that lets the spinning idle
workers of the previous library go to sleep (common.time_cpu). On a machine
shared with other jobs, wall times are noisy; ``--threads 1 --clock cpu``
times every library on one thread in CPU time, which other processes cannot
inflate.

For a fair NumPy matmul, clear the OpenBLAS overrides some machines set, for
this command only (the JSON records which were set and which kernel ran):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py --device cpu
    python benchmarks/bench_kernels.py --device cpu --quick   # smaller sizes, no compile timing
    python benchmarks/bench_kernels.py --device cpu --threads 1 --clock cpu \
        --out benchmarks/results/kernels_cpu_1thread
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np

# benchmarks/ is on sys.path when a script in it runs: common.py is importable as is
from common import (
    Row,
    add_ratios,
    check_close,
    machine_info,
    plot_rows,
    print_table,
    save_json,
    time_cpu,
)
from minivl.kernels import reference as ref
from minivl.kernels.numba import KERNELS as NB
from minivl.kernels.numba import matmul as nb_matmul
from threadpoolctl import threadpool_limits

from minivl.threads import limit_threads

RESULTS = Path(__file__).parent / "results"
F32 = np.float32

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # torch is an optional oracle
    torch = None


def _torch(fn):
    """Wrap a torch function of tensors as a function of NumPy arrays."""
    def call(*arrays):
        with torch.no_grad():
            return fn(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
    return call


def _as_numpy(x):
    if isinstance(x, tuple):
        return tuple(_as_numpy(t) for t in x)
    return x.numpy() if torch is not None and isinstance(x, torch.Tensor) else x


def cases(quick):
    """Yield (op, size label, args, work per call, unit, {version: fn}); "numpy" first."""
    rng = np.random.default_rng(0)
    randn = lambda *s: rng.standard_normal(s).astype(F32)

    for n in (256, 512) if quick else (256, 512, 1024):
        a, b = randn(n, n), randn(n, n)
        impls = {"numpy": ref.matmul, "numba v1 (i-k-j)": nb_matmul.matmul_v1, "numba": NB["matmul"]}
        if torch is not None:
            impls["torch"] = _torch(torch.matmul)
        yield "matmul", f"{n}^3", (a, b), 2.0 * n**3, "GFLOP/s", impls

    for op, top in (("softmax_forward", "softmax"), ("log_softmax_forward", "log_softmax")):
        for shape in ((1024, 1024),) if quick else ((1024, 1024), (4096, 4096)):
            x = 4 * randn(*shape)
            impls = {"numpy": getattr(ref, op), "numba": NB[op]}
            if torch is not None:
                torch_fn = getattr(torch, top)
                impls["torch"] = _torch(lambda t, f=torch_fn: f(t, -1))
            yield op, "x".join(map(str, shape)), (x,), 2.0 * x.nbytes, "GB/s", impls
    shape = (1024, 1024) if quick else (4096, 4096)
    y, dy = ref.softmax_forward(4 * randn(*shape)), randn(*shape)
    yield ("softmax_backward", "x".join(map(str, shape)), (y, dy), 3.0 * y.nbytes, "GB/s",
           {"numpy": ref.softmax_backward, "numba": NB["softmax_backward"]})

    R, C = (2048, 768) if quick else (8192, 768)
    x, g, b = randn(R, C), randn(C), randn(C)
    impls = {"numpy": ref.layer_norm_forward, "numba": NB["layer_norm_forward"]}
    if torch is not None:
        impls["torch"] = _torch(lambda t, tg, tb: tF.layer_norm(t, (C,), tg, tb, 1e-5))
    yield "layer_norm_forward", f"{R}x{C}", (x, g, b), 2.0 * x.nbytes, "GB/s", impls
    _, mean, rstd = ref.layer_norm_forward(x, g, b)
    dy = randn(R, C)
    yield ("layer_norm_backward", f"{R}x{C}", (dy, x, g, mean, rstd), 3.0 * x.nbytes, "GB/s",
           {"numpy": ref.layer_norm_backward, "numba": NB["layer_norm_backward"]})

    R, C = (1024, 3072) if quick else (4096, 3072)
    x, dy = 3 * randn(R, C), randn(R, C)
    for approx in ("none", "tanh"):
        impls = {"numpy": lambda t, a=approx: ref.gelu_forward(t, a),
                 "numba": lambda t, a=approx: NB["gelu_forward"](t, a)}
        if torch is not None:
            impls["torch"] = _torch(lambda t, a=approx: tF.gelu(t, approximate=a))
        yield f"gelu_forward ({approx})", f"{R}x{C}", (x,), 2.0 * x.nbytes, "GB/s", impls
        yield (f"gelu_backward ({approx})", f"{R}x{C}", (x, dy), 3.0 * x.nbytes, "GB/s",
               {"numpy": lambda t, d, a=approx: ref.gelu_backward(t, d, a),
                "numba": lambda t, d, a=approx: NB["gelu_backward"](t, d, a)})

    B, H, d = 1, 4, 64
    for n in (256, 1024) if quick else (256, 1024, 2048):
        for causal in (False, True):
            q, k, v = randn(B, H, n, d), randn(B, H, n, d), randn(B, H, n, d)
            label = f"B{B} H{H} N{n} d{d}" + (" causal" if causal else "")
            flops = 4.0 * B * H * n * n * d * (0.5 if causal else 1.0)  # QK^T and PV
            impls = {"numpy": lambda q, k, v, c=causal: ref.attention_forward(q, k, v, None, c),
                     "numba": lambda q, k, v, c=causal: NB["attention_forward"](q, k, v, None, c)}
            if torch is not None:
                impls["torch"] = _torch(
                    lambda tq, tk, tv, c=causal: tF.scaled_dot_product_attention(tq, tk, tv, is_causal=c))
            yield "attention_forward", label, (q, k, v), flops, "GFLOP/s", impls
            o, lse = ref.attention_forward(q, k, v, None, causal)
            do = randn(B, H, n, d)
            yield ("attention_backward", label, (q, k, v, o, lse, do), 2.5 * flops, "GFLOP/s",
                   {"numpy": lambda *a, c=causal: ref.attention_backward(*a, None, c),
                    "numba": lambda *a, c=causal: NB["attention_backward"](*a, None, c)})


def validate(got, want, name):
    """Check every output against the reference's (torch returns only the first)."""
    got = _as_numpy(got)
    if not isinstance(want, tuple):
        got, want = (got,), (want,)
    elif not isinstance(got, tuple):
        got = (got,)
    for i, (g, w) in enumerate(zip(got, want)):
        check_close(g, w, F32, f"{name} / output {i}", rtol=2e-4, atol=2e-5)


def run_timings(quick, repeats, clock):
    rows = []
    for op, size, args, work, unit, impls in cases(quick):
        want = impls["numpy"](*args)
        for version, fn in impls.items():
            validate(fn(*args), want, f"{op} {size} / {version}")
            t = time_cpu(fn, *args, repeats=repeats, clock=clock)
            rows.append(Row(op, version, size, t, work, unit))
            print(f"  {op:28s} {version:18s} {size:24s} {t * 1e3:9.3f} ms", flush=True)
    return rows


# Runs in a fresh process: time the first call of every Numba kernel.
_FIRST_CALL = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
from minivl.kernels.numba import KERNELS as K
out = {"import": time.perf_counter() - t0}
# Numba's own one-off start-up (its typing registries, which import scipy.linalg),
# paid by whichever jitted function runs first: measured on a trivial one
import numba
t = time.perf_counter(); numba.njit(lambda v: v + 1)(1.0); out["numba start-up"] = time.perf_counter() - t
x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
g = x[0].copy()
q = np.random.default_rng(1).standard_normal((1, 2, 8, 4)).astype(np.float32)
calls = [("matmul", (x, x.T)), ("softmax_forward", (x,)), ("softmax_backward", (x, x)),
         ("log_softmax_forward", (x,)), ("log_softmax_backward", (x, x)),
         ("layer_norm_forward", (x, g, g)), ("gelu_forward", (x,)), ("gelu_backward", (x, x)),
         ("attention_forward", (q, q, q))]
for name, args in calls:
    t = time.perf_counter(); K[name](*args); out[name] = time.perf_counter() - t
_, m, r = K["layer_norm_forward"](x, g, g)
t = time.perf_counter(); K["layer_norm_backward"](x, x, g, m, r); out["layer_norm_backward"] = time.perf_counter() - t
o, l = K["attention_forward"](q, q, q)
t = time.perf_counter(); K["attention_backward"](q, q, q, o, l, q); out["attention_backward"] = time.perf_counter() - t
print(json.dumps(out))
"""


def first_call_times():
    """{'cold': {...}, 'cached': {...}}: seconds per kernel for its first float32 call
    in a new process (after Numba's own start-up, timed apart)."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "cached"):  # the second process finds the first one's cache
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True)
            out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main():
    if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1:][:1] == ["gpu"]:
        # the GPU set lives in its own script; hand the other arguments over
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_kernels_gpu

        i = sys.argv.index("--device")
        return bench_kernels_gpu.main(sys.argv[1:i] + sys.argv[i + 2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                        help="cpu: this script; gpu: runs bench_kernels_gpu.py with the other arguments")
    parser.add_argument("--quick", action="store_true", help="small sizes, no compile timing")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for Numba, the BLAS and torch alike (default: all cores)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: process CPU time, meaningful with --threads 1 only")
    parser.add_argument("--out", default=str(RESULTS / "kernels_cpu"), help="path stem for .json/.png")
    args = parser.parse_args()

    limit_threads(numba=args.threads)  # minivl's threading layer too
    blas_limit = threadpool_limits(args.threads)  # noqa: F841 - held for the whole run
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"threads: {args.threads}, clock: {args.clock}, torch: {torch is not None}")
    compile_times = None if args.quick else first_call_times()
    if compile_times:
        print("first call in a new process, s (cold = compile, cached = load):")
        for name in compile_times["cold"]:
            print(f"  {name:24s} cold {compile_times['cold'][name]:7.2f}   "
                  f"cached {compile_times['cached'].get(name, float('nan')):6.3f}")
    rows = run_timings(args.quick, args.repeats, args.clock)
    add_ratios(rows, baseline="numpy")
    if compile_times:
        for r in rows:
            if r.version == "numba":
                r.compile_s = compile_times["cold"].get(r.op.split(" ")[0])
    print_table(rows)
    machine = machine_info(numba=numba.__version__, numba_threads=numba.get_num_threads(),
                           threading_layer=numba.threading_layer(),
                           torch=getattr(torch, "__version__", None))
    save_json(rows, args.out + ".json", machine=machine, first_call_s=compile_times,
              dtype="float32", repeats=args.repeats, threads=args.threads, clock=args.clock)
    plot_rows(rows, args.out + ".png", title=f"minivl CPU kernels, float32, {args.threads} thread(s), "
              f"{args.clock} clock: speed-up over NumPy")
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
