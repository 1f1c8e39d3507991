# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Kernels: the reference math and its fast versions
#
# No slide of the lecture covers this part. It is the machinery underneath
# all of them: the few operations that every model spends its time in
# (matmul, softmax, layer norm, GELU, attention), written three times.
#
# 1. **Kernels** work on raw arrays and know nothing about autograd. There
#    are three implementations: `numpy` (`kernels/reference.py`, the math
#    written to be read: the spec), `numba` (`kernels/numba/`, CPU) and
#    `cuda` (`kernels/cuda/*.cu`, compiled for CuPy arrays).
# 2. **Autograd** (`Tensor`, `Function`) calls whichever kernel the active
#    backend provides. Each `Function`'s forward and backward are written once.
# 3. **Modules and models** are written once against `minivl.functional`, so
#    the same GPT runs on every backend.
#
# This notebook derives the two ideas behind the fast kernels (the online
# softmax and FlashAttention's O(N) memory), walks through the SGEMM sequence
# version by version, shows measured figures, and checks that a model trains
# to the same losses on `numpy` and on `numba`. The first Numba call of each
# kernel compiles it (about 20 s in total on 2 cores). Later runs load the
# machine code from the on-disk cache.

# %%
import itertools
import json
import re
import statistics
import textwrap
import time
import tracemalloc
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from minivl.kernels import cuda, reference
from minivl.kernels import numba as nb
from minivl.kernels.cuda import attention_ladder as cuda_ladder
from minivl.kernels.cuda import emulate, sgemm
from minivl.kernels.numba import attention as nb_attention
from minivl.kernels.numba import attention_ladder as numba_ladder

import minivl as mv
from minivl import functional as F
from minivl.models.gpt import GPT
from minivl.train import train

ROOT = Path(mv.__file__).resolve().parents[1]  # the repository (minivl is installed editable)
RESULTS = ROOT / "benchmarks" / "results"
rng = np.random.default_rng(0)
mv.manual_seed(0)

# %% [markdown]
# ## Three layers and the backend switch
#
# `mv.use(name)` (or the environment variable `MINIVL_BACKEND`) picks the
# backend. An op that a backend has not written falls back to the reference
# without an error. `mv.backend.report()` lists which implementation actually
# served each op since the last switch. CuPy arrays always go to `cuda`,
# whatever the active backend is.

# %%
print("backends on this machine:", mv.backend.available())

x = mv.tensor(rng.standard_normal((4, 16)).astype(np.float32), requires_grad=True)
gamma = mv.tensor(np.ones(16, np.float32), requires_grad=True)
beta = mv.tensor(np.zeros(16, np.float32), requires_grad=True)
grads = {}
for name in ("numpy", "numba"):
    mv.use(name)
    x.grad = None
    y = F.softmax(F.layer_norm(x, gamma, beta), axis=-1)  # the same autograd code on both
    (y * y).sum().backward()
    grads[name] = x.grad.copy()
    print(f"{name:6s} served:", mv.backend.report())
print("max |dx numpy - dx numba| =", float(np.abs(grads["numpy"] - grads["numba"]).max()))
mv.use("numpy")

# %% [markdown]
# ## The reference math is the spec
#
# Every fast kernel must match `kernels/reference.py`, including the edge
# cases the reference fixes by convention. A fully masked row (all `-inf`, for
# example a query whose keys are all padding) gives a softmax of zeros and a
# log-sum-exp of `-inf`, never NaN. Large logits must not overflow. That is
# why every implementation subtracts the row maximum before `exp`.

# %%
rows = np.array([[1.0, 2.0, 3.0, 4.0],
                 [1000.0, 1001.0, -np.inf, 999.0],  # exp(1000) alone would overflow
                 [-np.inf] * 4], np.float32)  # fully masked
np.set_printoptions(precision=4, suppress=True)
print("reference:\n", reference.softmax_forward(rows))
print("numba:\n", nb.softmax.softmax_forward(rows))

# %% [markdown]
# ## Online softmax: a running max and a running sum
#
# The stable softmax needs the row maximum *before* it can sum the
# exponentials, which means two passes over the row. Milakov & Gimelshein (2018)
# fold both into one pass. Read the row in chunks and keep two numbers per row,
# the running maximum $m$ and the running sum $\ell = \sum_j e^{x_j - m}$ of
# everything seen so far. When a new chunk raises the maximum from
# $m_\text{old}$ to $m_\text{new}$, every term already in the sum was computed
# against the old maximum. Multiplying the sum by $e^{m_\text{old} - m_\text{new}}$
# moves all of them to the new one:
#
# $$m_\text{new} = \max(m_\text{old}, \max_{j \in \text{chunk}} x_j), \qquad
#   \ell_\text{new} = \ell_\text{old}\, e^{m_\text{old} - m_\text{new}}
#   + \sum_{j \in \text{chunk}} e^{x_j - m_\text{new}}.$$
#
# At the end, $\text{softmax}(x)_j = e^{x_j - m}/\ell$. Attention goes one step
# further. It never needs the probabilities themselves, only $o = \text{softmax}(s)\,V$,
# so the same factor rescales a running output accumulator,
# $o \leftarrow o\, e^{m_\text{old} - m_\text{new}} + e^{s_\text{chunk} - m_\text{new}} V_\text{chunk}$,
# and one division by $\ell$ at the end finishes the job.

# %%
x = (rng.standard_normal((5, 100)) * 10).astype(np.float32)  # (rows, keys)
v = rng.standard_normal((100, 8)).astype(np.float32)  # (keys, Dv): "values"
m = np.full(5, -np.inf, np.float32)  # running max per row
l = np.zeros(5, np.float32)  # running sum of exp(x - m)
o = np.zeros((5, 8), np.float32)  # running, unnormalised softmax(x) @ v
for j in range(0, 100, 16):  # chunks of 16 keys, the last one shorter
    chunk = x[:, j : j + 16]
    m_new = np.maximum(m, chunk.max(axis=1))
    alpha = np.exp(m - m_new)  # exp(m_old - m_new) rescales the old terms; 0 on the first chunk
    p = np.exp(chunk - m_new[:, None])
    l = l * alpha + p.sum(axis=1)
    o = o * alpha[:, None] + p @ v[j : j + 16]
    m = m_new

online = np.exp(x - m[:, None]) / l[:, None]
print("online softmax vs reference:       max abs err", np.abs(online - reference.softmax_forward(x)).max())
print("online softmax(x) @ v vs reference: max abs err", np.abs(o / l[:, None] - reference.softmax_forward(x) @ v).max())

# %% [markdown]
# ## Flash attention: O(N) memory instead of N x N
#
# The reference `attention_forward` builds the whole $(N_q, N_k)$ score matrix
# for each head, plus a mask and the probabilities of the same size. Memory
# therefore grows as $N^2$: at N = 16k and float32 that is 1 GiB *per head*. The
# fused kernel (`kernels/numba/attention.py`, after Dao et al.'s FlashAttention)
# takes a tile of 80 queries and walks over tiles of 80 keys with the online
# softmax above. A score tile lives only as long as its inner loop. What
# survives is O(N) per head: the running $m$ and $\ell$, and the saved
# log-sum-exp $\text{lse} = m + \log \ell$. The backward pass rebuilds
# $P = e^{S - \text{lse}}$ from the lse tile by tile, instead of storing P.
#
# First the arithmetic, for one head in float32:

# %%
D = 64
print(f"{'N':>6} | {'N x N scores':>13} | {'m, l, lse (3N)':>14} | {'q, k, v, o (4ND)':>16}")
for n in (256, 1024, 4096, 16384, 65536):
    print(f"{n:6d} | {4 * n * n / 2**20:10.1f} MiB | {3 * 4 * n / 2**10:10.1f} KiB | {4 * 4 * n * D / 2**20:12.1f} MiB")

# %% [markdown]
# Then a measurement. `tracemalloc` records the peak of NumPy's allocations
# during one forward call of each implementation (one head, D = 64). The
# reference's peak is a little over three N x N float32 matrices, growing with
# slope 2 on the log-log plot. The fused kernel's peak grows with slope 1: it
# is the output and a transposed copy of K, each N x D. Its per-task tile
# buffers are allocated by Numba's runtime, so tracemalloc cannot see them.
# They are a few 80 x 80 tiles per thread, about 75 KiB, whatever N is.

# %%
def peak_bytes(fn, *args):
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


Ns = [256, 512, 1024, 2048]
measured = {"reference (numpy)": [], "fused (numba)": []}
for n in Ns:
    q, k, v = (rng.standard_normal((1, 1, n, D)).astype(np.float32) for _ in range(3))
    nb_attention.attention_forward(q, k, v)  # compile / warm up outside the measurement
    measured["reference (numpy)"].append(peak_bytes(reference.attention_forward, q, k, v))
    measured["fused (numba)"].append(peak_bytes(nb_attention.attention_forward, q, k, v))

n_axis = np.array([128, 65536])
plt.figure(figsize=(6.5, 4))
plt.loglog(n_axis, 4.0 * n_axis**2, "k--", lw=1, label="one N x N float32 matrix")
plt.loglog(n_axis, 4.0 * 4 * n_axis * D, "k:", lw=1, label="q, k, v, o (4 N D floats)")
for (label, peaks), marker in zip(measured.items(), "os"):
    plt.loglog(Ns, peaks, marker + "-", label=f"measured peak: {label}")
plt.xlabel("sequence length N (one head, D = 64)")
plt.ylabel("bytes")
plt.title("attention forward: extra memory")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()
for n, a, b in zip(Ns, *measured.values()):
    print(f"N={n:5d}: reference peak {a / 2**20:6.1f} MiB ({a / (4 * n * n):.1f} x N^2 floats), "
          f"fused {b / 2**20:5.2f} MiB")

# %% [markdown]
# ## Flash attention equals the reference, causal and padded
#
# The fused kernel must give the reference's numbers for any mask, not only
# for the easy one. Below is GPT's causal mask together with a padded batch.
# The second sequence's last 37 keys are padding, and 100 positions cross the
# 64-wide tiles unevenly. The kernel is checked forward (o and lse) and
# backward (dq, dk, dv).

# %%
B, H, N, D = 2, 3, 100, 16
q, k, v = (rng.standard_normal((B, H, N, D)).astype(np.float32) for _ in range(3))
key_padding_mask = np.ones((B, N), bool)
key_padding_mask[1, -37:] = False  # True = a real key
do = rng.standard_normal((B, H, N, D)).astype(np.float32)

o_ref, lse_ref = reference.attention_forward(q, k, v, key_padding_mask, causal=True)
o_nb, lse_nb = nb_attention.attention_forward(q, k, v, key_padding_mask, causal=True)
grads_ref = reference.attention_backward(q, k, v, o_ref, lse_ref, do, key_padding_mask, causal=True)
grads_nb = nb_attention.attention_backward(q, k, v, o_nb, lse_nb, do, key_padding_mask, causal=True)
for name, a, b in [("o", o_nb, o_ref), ("lse", lse_nb, lse_ref), *zip(("dq", "dk", "dv"), grads_nb, grads_ref)]:
    print(f"{name:3s} max abs err {np.abs(a - b).max():.1e}")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
print("padded keys get no gradient:", bool(np.all(grads_nb[1][1, :, -37:] == 0)))

# %% [markdown]
# ## The attention ladder, rung by rung
#
# Attention, like SGEMM, is a numbered ladder with one change a rung
# (`kernels/numba/attention_ladder.py`, `kernels/cuda/attention_ladder.py`).
# Rung 1 writes the whole score matrix. Rung 2 streams the keys with the
# online softmax. Rung 3 does the same on tiles, and rung 4 is the backward
# pass. The GPU adds rung 5 on tensor cores. Every forward rung must give the
# reference's output on the padded causal case above. The CUDA rungs run here
# through the emulator.

# %%
def check_rungs(backend, ladder):
    """Print each rung's change; run each fp32 forward rung on the case above."""
    for version, rung in ladder.items():
        line = f"{backend} v{version}: {rung.change}"
        if rung.op == "attention_forward" and getattr(rung, "storage", "float32") == "float32":
            o, _ = rung.fn(q, k, v, key_padding_mask, True)
            np.testing.assert_allclose(o, o_ref, rtol=1e-4, atol=1e-5)
            line += f"  (max abs err of o: {np.abs(o - o_ref).max():.1e})"
        print(line)


check_rungs("numba", numba_ladder.LADDER)
if emulate.available():
    with emulate.on_cpu():
        check_rungs("cuda", cuda_ladder.LADDER)

# %% [markdown]
# The saved benchmark (`benchmarks/bench_attention.py`, one thread, CPU time)
# times each Numba rung. Rungs 1 and 2 do the same arithmetic one key at a
# time. Rung 3 turns it into tile products and is more than twenty times
# faster.

# %%
saved = json.loads((RESULTS / "attention_cpu.json").read_text())
for row in saved["rows"]:
    print(f"{row['op']:19s} {row['version']:9s} {row['size']:16s} {row['time_s'] * 1e3:8.1f} ms "
          f"{row['rate']:6.1f} GFLOP/s  x numpy {row['ratio']:.2f}")

# %% [markdown]
# ## The SGEMM sequence, version by version
#
# `kernels/cuda/matmul.cu` follows Simon Boehm's "How to optimize a CUDA
# matmul kernel for cuBLAS-like performance" (2022) as a numbered sequence.
# Each kernel adds one idea to the kernel before it, so reading the diff
# between kernel k and k+1 is the lesson. The table below is read straight
# from the header comment of each kernel in the source file, and the launch
# shapes from `kernels/cuda/sgemm.py`.

# %%
source = (Path(cuda.__file__).parent / "matmul.cu").read_text(encoding="utf-8")
headers = {  # "// kernel k: name -- what it changes" and the comment lines after it
    int(m_.group(1)): " ".join(line.removeprefix("//").strip() for line in m_.group(2).splitlines())
    for m_ in re.finditer(r"^// kernel (\d): (.*(?:\n// .*)*)", source, re.M)
}
for version, spec in sgemm.VERSIONS.items():
    threads = spec.block[0] * spec.block[1]
    print(f"v{version} {spec.name}  (C tile {spec.tile[0]}x{spec.tile[1]} per block, {threads} threads)")
    print(textwrap.indent(textwrap.fill(headers[version], 92), "    "))

# %% [markdown]
# ## The CUDA sources, run on the CPU
#
# This machine has no GPU, but the `.cu` files still run. `kernels/cuda/emulate.py`
# compiles them as host C++, with each CUDA thread turned into a fiber and
# each `__syncthreads()` turned into a yield. Inside `emulate.on_cpu()` the
# CuPy wrappers take NumPy arrays. It is thousands of times slower than a GPU,
# but it shows that every version of the sequence computes the same product,
# here on a shape that is not a multiple of any tile.

# %%
a = rng.standard_normal((70, 45)).astype(np.float32)
b = rng.standard_normal((45, 33)).astype(np.float32)
if emulate.available():
    with emulate.on_cpu():
        for version in sgemm.VERSIONS:
            err = np.abs(cuda.matmul(a, b, version=version) - reference.matmul(a, b)).max()
            print(f"v{version} {sgemm.VERSIONS[version].name:24s} max abs err vs numpy: {err:.1e}")
else:
    print("no C++17 compiler with _Float16 here: the emulator is unavailable, skipped")

# %% [markdown]
# ## SGEMM: how far each version gets
#
# The GPU benchmark (`benchmarks/bench_kernels_gpu.py`) checks every version
# and then times it against cuBLAS in the same run, with TF32 off. It saves its
# results in `benchmarks/results/kernels_gpu.json`, together with the name of
# the card. If that file exists, the bars below are our own measurements.
# If it does not, the cell says so and shows only the percentages siboehm
# *published* for his kernels on an RTX A6000. Those are not minivl's figures.
# His sequence has no double-buffered step with a published figure, so v8 has
# no published bar.

# %%
# siboehm (2022), % of cuBLAS on an A6000, for the kernels our versions 1..7 follow
PUBLISHED = {1: 1, 2: 9, 3: 13, 4: 37, 5: 69, 6: 78, 7: 94}

gpu_path = RESULTS / "kernels_gpu.json"
gpu = json.loads(gpu_path.read_text()) if gpu_path.exists() else {}
card = gpu.get("machine", {}).get("gpu")
matmul_rows = [r for r in gpu.get("rows", []) if r["op"] == "matmul"] if card else []
ours, ours_label = {}, None
if matmul_rows:
    size = max({r["size"] for r in matmul_rows}, key=lambda s: int(s.split("x")[0]))  # the largest
    for r in matmul_rows:
        hit = re.match(r"cuda v(\d)", r["version"])
        if hit and r["size"] == size and r.get("ratio"):
            ours[int(hit.group(1))] = 100 * r["ratio"]
    ours_label = f"minivl, measured on {card}, {size}"
    print(f"GPU figures recorded on {card} ({gpu_path.name}), matmul {size}:")
    for version, pct in sorted(ours.items()):
        print(f"  v{version} {sgemm.VERSIONS[version].name:24s} {pct:5.1f} % of cuBLAS")
else:
    print("No GPU figures have been recorded yet: there is no benchmarks/results/kernels_gpu.json naming a card.")
    print("(Run `python benchmarks/bench_kernels_gpu.py` on a CUDA machine to record them.)")
    print("The bars below are siboehm's PUBLISHED percentages for his own kernels, not measurements of ours.")

versions = list(sgemm.VERSIONS)
width = 0.4 if ours else 0.6
plt.figure(figsize=(8, 4))
plt.bar([v - width / 2 * bool(ours) for v in PUBLISHED], list(PUBLISHED.values()), width, color="lightgray",
        edgecolor="gray", hatch="//", label="published by siboehm (A6000), not ours")
if ours:
    plt.bar([v + width / 2 for v in ours], list(ours.values()), width, color="tab:orange", label=ours_label)
plt.axhline(100, color="k", lw=0.8)
if 8 not in PUBLISHED and 8 not in ours:
    plt.text(8, 2, "no published\nfigure", ha="center", fontsize=7)
plt.xticks(versions, [f"v{v}\n{sgemm.VERSIONS[v].name.removeprefix('sgemm').split('_', 1)[1]}" for v in versions],
           fontsize=7)
plt.ylim(0, 110)
plt.ylabel("% of cuBLAS SGEMM")
plt.title("the SGEMM sequence" + ("" if ours else ": no GPU figures of ours recorded yet"))
plt.legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## CPU figures, measured live
#
# These timings come from this run, at small sizes, in float32, as the median
# of a few calls after a warm-up. On a shared 2-core machine they are noisy;
# the benchmark below is the careful version. NumPy's composed softmax and
# layer norm make several passes over memory with a temporary array each. The
# Numba kernels read a row once, while it is still in cache, and use an `exp`
# that LLVM can vectorise (`kernels/numba/vmath.py`).

# %%
def median_time(fn, *args, repeats=9):
    fn(*args)  # warm-up (and JIT compile, the first time)
    time.sleep(0.05)  # let the other library's idle worker threads go to sleep
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


xs = rng.standard_normal((512, 512)).astype(np.float32)
xl = rng.standard_normal((512, 768)).astype(np.float32)
g, b_ = np.ones(768, np.float32), np.zeros(768, np.float32)
qa, ka, va = (rng.standard_normal((1, 4, 512, 64)).astype(np.float32) for _ in range(3))
cases = [
    ("softmax 512x512", reference.softmax_forward, nb.softmax.softmax_forward, (xs,)),
    ("layer norm 512x768", reference.layer_norm_forward, nb.layer_norm.layer_norm_forward, (xl, g, b_)),
    ("attention B1 H4 N512 d64", reference.attention_forward, nb_attention.attention_forward, (qa, ka, va)),
    ("attention ... causal", lambda *a: reference.attention_forward(*a, causal=True),
     lambda *a: nb_attention.attention_forward(*a, causal=True), (qa, ka, va)),
]
live = []
for label, ref_fn, nb_fn, args in cases:
    t_ref, t_nb = median_time(ref_fn, *args), median_time(nb_fn, *args)
    live.append((label, t_ref / t_nb))
    print(f"{label:26s} numpy {t_ref * 1e3:7.3f} ms   numba {t_nb * 1e3:7.3f} ms   x{t_ref / t_nb:5.1f}")

# %% [markdown]
# ## The saved CPU benchmark
#
# `benchmarks/bench_kernels.py` validates every kernel against the reference
# before it times anything. It then takes the median of repeats at larger
# sizes and saves JSON. The plot shows the speed-up over NumPy (more than 1
# means faster) for two saved runs: 2 threads timed by wall clock
# (`kernels_cpu.json`), and 1 thread timed by CPU time (`kernels_cpu_1thread.json`),
# which other processes on a shared machine cannot inflate. In a few places the
# two runs differ by far more than a second thread can explain (matmul 1024^3,
# attention at N = 256). Wall-clock times on a shared machine are noisy, and
# the CPU-time run is the steadier of the two.

# %%
runs = {}
for name, label in (("kernels_cpu.json", "2 threads, wall clock"), ("kernels_cpu_1thread.json", "1 thread, CPU time")):
    if (RESULTS / name).exists():
        runs[label] = json.loads((RESULTS / name).read_text())
if not runs:
    print("no saved CPU benchmark: run `python benchmarks/bench_kernels.py --device cpu`")
else:
    machine = next(iter(runs.values()))["machine"]
    print(f"saved on: {machine.get('processor')}, {machine.get('cores')} cores, numpy {machine.get('numpy')}, "
          f"numba {machine.get('numba')}")
    keys = list(dict.fromkeys((r["op"], r["size"]) for run in runs.values() for r in run["rows"]
                              if r["version"] == "numba"))
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(keys) + 1.2))
    height = 0.8 / len(runs)
    for i, (label, run) in enumerate(runs.items()):
        ratio = {(r["op"], r["size"]): r["ratio"] for r in run["rows"] if r["version"] == "numba"}
        ax.barh([y + i * height for y in range(len(keys))], [ratio.get(key, np.nan) for key in keys], height,
                label=f"numba / numpy, {label}")
    ax.axvline(1, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks([y + height * (len(runs) - 1) / 2 for y in range(len(keys))],
                  [f"{op} {size}" for op, size in keys], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over NumPy (log scale)")
    ax.legend(fontsize=8, loc="lower right")
    plt.tight_layout()
    plt.show()
    for label, run in runs.items():
        cold = run.get("first_call_s", {}).get("cold", {})
        if cold:
            print(f"{label}: JIT compile of the attention forward on a cold cache: "
                  f"{cold.get('attention_forward', float('nan')):.1f} s")

# %% [markdown]
# ## One model, two backends, the same losses
#
# The test that matters most for a fast path is that nothing above it can
# tell the difference. A tiny GPT (`minivl.models.gpt`, 2 pre-LN blocks, causal
# attention, tanh GELU, a tied LM head) trains for 5 steps with the one
# training loop, starting from the same seed, once on each backend. The numba
# run uses every kernel: matmul, layer norm, GELU, fused attention and
# log-softmax, forward and backward. At this toy size the numba run is not
# faster. Its parallel kernels pay a fixed start-up cost on each call, which
# arrays this small cannot amortise.

# %%
ids = rng.integers(0, 64, size=(8, 33))  # a fixed batch of 8 windows of 33 tokens
losses, seconds = {}, {}
for name in ("numpy", "numba"):
    mv.use(name)
    mv.manual_seed(0)
    model = GPT(vocab_size=64, max_len=32, dim=32, depth=2, num_heads=2)
    optimizer = mv.optim.AdamW(model.parameters(), lr=3e-3)
    history = train(model, lambda m, batch: m.loss(batch), itertools.repeat(ids), optimizer, steps=5,
                    progress=False, desc=name)
    losses[name], seconds[name] = np.array(history.loss), history.seconds
    print(f"{name:6s} losses", np.round(losses[name], 6), f"({history.seconds:.2f} s)  served:",
          sorted(set(mv.backend.report().values())))
mv.use("numpy")
print("max |loss numpy - loss numba| =", np.abs(losses["numpy"] - losses["numba"]).max())
np.testing.assert_allclose(losses["numba"], losses["numpy"], rtol=1e-5)

# %% [markdown]
# ## Where to read next
#
# * the spec: `kernels/reference.py`; the fast versions beside it in
#   `kernels/numba/` and `kernels/cuda/`;
# * the tests that pin them to the spec: `tests/kernels/` (hypothesis, on
#   shapes that are not tile multiples, large magnitudes and fully masked rows);
# * the measurements: `benchmarks/bench_kernels.py` (CPU) and
#   `benchmarks/bench_kernels_gpu.py` (GPU), both validating before timing;
# * the notes: `lectures/05-kernels.md`.
