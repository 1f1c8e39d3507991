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
# # 07 · Scale: attention that grows with the image, training on several processes
#
# Slide **S01** lists Swin and PVT beside ViT: the vision transformers that
# made attention affordable at high resolution. A ViT's global attention
# compares every patch with every other, so doubling the image side multiplies
# the score matrix by 16. This notebook draws Swin's windows and its shift on
# an image, checks the shifted-window mask, and shows the measured cost of the
# three attentions of `minivl/models/vision.py::VisionEncoder`.
#
# The second half is about the other way to scale: one model trained by
# several processes over MPI (`minivl/distributed`), with CLIP's contrastive
# loss over the global batch (S14: CLIP's batch of 32,768 was spread over
# many GPUs). Notes: `lectures/07-scale.md`.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minivl as mv
from minivl.data.render import render
from minivl.data.shapes import sample_scenes
from minivl.distributed import distributed_info_nce, init
from minivl.losses import info_nce
from minivl.models.vision import VisionEncoder
from minivl.nn.swin import shifted_window_mask, window_partition
from minivl.viz import swin_windows_figure

ROOT = Path(mv.__file__).resolve().parents[1]  # the repository (minivl is installed editable)
RESULTS = ROOT / "benchmarks" / "results"
mv.manual_seed(0)

# %% [markdown]
# ## S01 Swin: windows, and the shift
#
# A 64 x 64 scene cut into 4 px patches is a 16 x 16 grid of tokens. Swin
# attends inside windows of 4 x 4 patches (left): 16 windows of 16 tokens,
# 16 x 16 x 16 = 4,096 scores per head instead of 256 x 256 = 65,536.
# Every second block moves the window borders by half a window (middle), so
# that information crosses the old borders. Swin computes the shifted windows
# by rolling the grid by two patches and cutting it as before; the windows at
# the bottom and right edges then hold pieces from opposite sides of the image
# (the colours), and the mask (right) stops those pieces attending to each
# other.

# %%
scene = sample_scenes(1, np.random.default_rng(3), image_size=64)
image = render(scene)[0]  # (64, 64, 3) uint8
fig = swin_windows_figure(image, patch_size=4, window_size=4)
plt.show()

# %% [markdown]
# The mask is built from region labels (`shifted_window_mask`); the tests
# check it against a brute-force rule: two tokens of a rolled window may
# attend to each other exactly when the roll did not wrap between them
# (`tests/nn/test_swin.py`). The windows themselves are a reshape and a
# transpose (`window_partition`): token t of a window is row t // M, column
# t % M.

# %%
mask = shifted_window_mask(16, 16, 4, 2)  # (nW, 16, 16)
allowed = mask.reshape(len(mask), -1).mean(1)
print(f"{len(mask)} windows; fraction of allowed pairs: interior {allowed[0]:.2f}, "
      f"right edge {allowed[3]:.2f}, bottom edge {allowed[12]:.2f}, bottom-right corner {allowed[-1]:.2f}")
assert allowed[0] == 1.0 and allowed[3] == 0.5 and allowed[-1] == 0.25
grid = mv.tensor(np.arange(16 * 16, dtype=np.float64).reshape(1, 16, 16, 1))
print("tokens of window 1:", window_partition(grid, 4).data[1, :, 0].astype(int))

# %% [markdown]
# ## One encoder, three attentions
#
# `VisionEncoder(attention=...)` swaps the blocks and keeps everything else:
# `"global"` (ViT), `"swin"` (shifted windows; no [CLS] token, its output
# token 0 is the average of the patch tokens, as Swin's classifier reads) and
# `"pvt"` (PVT's spatial-reduction attention: every query attends to the map
# shrunk `sr_ratio` times per side). Every model built on the encoder (ViT,
# CLIP's image tower) takes the option.

# %%
x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
for attention in ("global", "swin", "pvt"):
    enc = VisionEncoder(image_size=64, patch_size=4, in_channels=3, dim=32, depth=2, num_heads=2,
                        attention=attention, window_size=4, sr_ratio=4)
    out = enc(x)
    print(f"{attention:>6}: output {out.shape}, {enc.num_parameters():,} parameters")

# %% [markdown]
# ## Measured: time and memory against image size
#
# `benchmarks/bench_attention_scaling.py` times one forward and backward of a
# small encoder (4 px patches, width 32, 2 blocks) from 32 to 256 px, i.e.
# from 64 to 4,096 tokens, and records the peak memory NumPy allocated. Swin
# uses 4 x 4-patch windows; PVT reduces the keys to an 8 x 8 map, as PVT's
# first stage does (56 x 56 -> 7 x 7). Global attention grows with the square
# of the token count; the other two grow linearly. The plot is drawn from the
# committed results file.

# %%
scaling = json.loads((RESULTS / "attention_scaling_cpu.json").read_text())
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for attention in ("global", "swin", "pvt"):
    rows = [r for r in scaling["scaling"] if r["attention"] == attention]
    axes[0].loglog([r["tokens"] for r in rows], [r["time_s"] for r in rows], "o-", label=attention)
    axes[1].loglog([r["tokens"] for r in rows], [r["peak_mib"] for r in rows], "o-", label=attention)
for ax, title in zip(axes, ("forward + backward (s)", "peak memory (MiB)")):
    ax.set_xlabel("patch tokens")
    ax.set_title(title)
    ax.legend()
plt.show()
for row in scaling["accuracy_64px"]:
    print(f"shapes at 64 px, {row['attention']:>6}: test accuracy {row['test_accuracy']:.3f} after {row['steps']} steps")

# %% [markdown]
# ## Data parallel: the loss over the global batch
#
# With `mpirun -n 4`, four copies of a training program run; each embeds a
# quarter of the global batch. CLIP's loss needs every pair of the global
# batch as negatives, so the embeddings are all-gathered, and the gather
# passes gradients back (its backward is a reduce-scatter). In one process the
# communicator is the identity, and the distributed loss is the plain one; the
# tests run the same code under `mpirun -n 2` and `-n 4` and find every
# gradient equal to one process on the global batch.

# %%
comm = init(distributed=False)  # one process: no MPI needed
rng = np.random.default_rng(1)
img = mv.tensor(rng.standard_normal((8, 16)))
txt = mv.tensor(rng.standard_normal((8, 16)))
for local_loss in (False, True):
    d = distributed_info_nce(img, txt, 1.0, comm, local_loss=local_loss).item()
    print(f"local_loss={local_loss}: {d:.6f}  (plain info_nce: {info_nce(img, txt, 1.0).item():.6f})")

# %% [markdown]
# ## Measured: throughput with 1, 2 and 4 ranks, and the scaling model
#
# `benchmarks/bench_scale_mpi.py` trains a small CLIP on a fixed global batch
# with 1, 2 and 4 ranks on one 2-core machine (4 ranks are oversubscribed, so
# they cannot beat 2), and writes a scaling model: compute per step divided by
# N, plus the bytes a ring all-reduce moves, 2 (N-1)/N times the gradient
# size, over a given network.

# %%
mpi = json.loads((RESULTS / "scale_mpi_cpu.json").read_text())
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].bar([str(r["ranks"]) for r in mpi["runs"]], [r["pairs_per_s"] for r in mpi["runs"]])
axes[0].set_xlabel("ranks (one machine, 2 cores)")
axes[0].set_ylabel("pairs / s")
for name, rows in mpi["scaling_model"].items():
    axes[1].loglog([r["ranks"] for r in rows], [r["speedup"] for r in rows], "o-", base=2, label=name)
axes[1].set_xlabel("machines")
axes[1].set_ylabel("modelled speed-up")
axes[1].legend()
plt.show()
