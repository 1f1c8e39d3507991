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
# # 03 · ViT: an image is worth 16x16 words
#
# Slides **S01** (ViT as the transformer of computer vision), **S14** (ViT is
# CLIP's image encoder) and **S29** (a frozen CLIP ViT gives LLaVA its image
# tokens).
#
# ViT (Dosovitskiy et al., 2021) reads an image the way BERT reads a sentence:
# it cuts the image into P x P patches, projects each flattened patch to a
# vector, puts a learned [CLS] token in front, adds a learned position
# embedding, and runs a stack of pre-LN transformer blocks. The class is
# predicted from the final [CLS] state. In minivl the encoder is
# `minivl/models/vision.py::VisionEncoder`, written once and shared with CLIP
# and LLaVA, and the classifier is `minivl/models/vit.py::ViT`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import minivl as mv
from minivl import nn
from minivl.models.vision import VisionEncoder, patchify, preprocess
from minivl.recipes.vit import digits_task, shapes_task, train_vit
from minivl.tensor import no_grad
from minivl.viz import image_grid
from minivl.viz.attention import (
    attention_heads_figure,
    attention_rollout_figure,
    position_similarity_figure,
)

CI = os.environ.get("MINIVL_NOTEBOOK_CI") == "1"  # the test runner asks for a short run
mv.manual_seed(0)
digits = digits_task()  # 16x16 digits, patch 4
shapes = shapes_task(n_train=8, n_test=8)  # 32x32 scenes, patch 8 (only for pictures here)
print(f"digits: {len(digits.train_labels)} train / {len(digits.test_labels)} test images of "
      f"{digits.image_size}x{digits.image_size}, patch {digits.patch_size}")

# %% [markdown]
# ## Patches are the tokens
#
# A 32x32 scene with patch 8 becomes a 4x4 grid, which is a sequence of 16
# patches read row by row (`patchify`). With patch 4 a 16x16 digit is also 16
# patches. The ViT-B/16 of the paper turns a 224x224 photo into 196 patches.

# %%
image = shapes.train_images[0]  # (32, 32, 3) uint8
P = shapes.patch_size
fig, ax = plt.subplots(figsize=(2.5, 2.5))
ax.imshow(image, interpolation="nearest")
for k in range(1, image.shape[0] // P):
    ax.axhline(k * P - 0.5, color="white", lw=1)
    ax.axvline(k * P - 0.5, color="white", lw=1)
ax.set_title(f"{shapes.class_names[shapes.train_labels[0]]}, cut into {P}x{P} patches", fontsize=8)
ax.set_axis_off()
plt.show()

patches = patchify(image.transpose(2, 0, 1)[None], P)[0]  # (16, 3, 8, 8)
image_grid(patches.transpose(0, 2, 3, 1), captions=[str(i) for i in range(len(patches))],
           ncols=16, panel_size=0.6)

# %% [markdown]
# The patch embedding is a convolution whose kernel and stride are both P.
# That is exactly one Linear applied to every flattened patch; the test
# `tests/models/test_vit.py::test_patch_embedding_is_a_linear_layer_on_flattened_patches`
# checks it, and it is checked here once more:

# %%
enc = VisionEncoder(image_size=32, patch_size=8, in_channels=3, dim=64, depth=2, num_heads=4)
x = preprocess(shapes.train_images[:2])  # (2, 3, 32, 32) floats in [-1, 1]
with no_grad():
    conv = enc.patch_embed(x).numpy().reshape(2, 64, 16).transpose(0, 2, 1)  # (B, N, D)
flat = patchify(x, 8).reshape(2, 16, -1)  # (B, N, C*P*P) = (2, 16, 192)
linear = flat @ enc.patch_embed.weight.numpy().reshape(64, -1).T + enc.patch_embed.bias.numpy()
print("conv == linear on flattened patches:", np.allclose(conv, linear, atol=1e-5))
with no_grad():
    print("encoder output:", enc(x).shape, "= (B, 1 + 16 patches, D)")
print(f"{enc.num_parameters():,} parameters; each of the {enc.depth} blocks:")
print(enc.transformer.blocks[0])

# %% [markdown]
# ## Training on the digits
#
# A run short enough for this notebook: 150 steps of the digits recipe
# (`train_vit`, about half a minute on 2 idle cores; 40 smaller steps under the
# test runner). `minivl vit train --task digits` runs 400 steps in a few
# minutes on 2 cores and reaches about 98% test accuracy. A ViT has no
# convolutional prior and only about 1,400 training digits here, so the recipe
# regularises with dropout, label smoothing and weight decay.

# %%
settings = dict(steps=40, batch_size=64, eval_every=20) if CI else dict(steps=150, eval_every=25)
run = train_vit(digits, progress=False, **settings)
m, history = run["metrics"], run["history"]
print(f"{m['parameters']:,} parameters, {m['steps']} steps in {m['train_seconds']:.0f} s: "
      f"test accuracy {m['test_accuracy_start']:.3f} -> {m['test_accuracy']:.3f}")

fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6))
a.plot(history.steps, history.loss)
a.set(xlabel="step", ylabel="training loss (label-smoothed)")
b.plot([e["step"] for e in history.evals], [e["test_accuracy"] for e in history.evals], "o-")
b.set(xlabel="step", ylabel="test accuracy", ylim=(0, 1))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What the position embeddings learned
#
# Nothing but `pos_embed` tells the model where a patch came from. Panel
# (i, j) below shows the cosine similarity between the position embedding of
# patch (i, j) and that of every other patch (as in Figure 7 of the paper).
# They start as random vectors, so at first every panel shows only its own
# square. Training pulls the embeddings of neighbouring patches together,
# although a run this short leaves the picture noisy. In the paper's long runs,
# clear row and column structure appears.

# %%
position_similarity_figure(run["model"])

# %% [markdown]
# ## Where the model looks
#
# Below is each head's attention from [CLS] to the 16 patches, one row per
# layer. Under that is the *attention rollout* (Abnar & Zuidema, 2020): the
# heads are averaged, the identity is added for the residual path, the rows
# are renormalised, and the layers are multiplied through. The rollout shows
# how much of each patch reaches the final [CLS] (`minivl/viz/attention.py`).

# %%
model, task = run["model"], run["task"]
attention_heads_figure(model, task.test_images[0], title=f"digit {task.test_labels[0]}")

# %%
attention_rollout_figure(model, task.test_images[:8], [str(y) for y in task.test_labels[:8]])

# %% [markdown]
# ## One encoder, three models
#
# CLIP's image tower is the same `VisionEncoder` with `ln_pre=True`,
# `activation="quick_gelu"` and `patch_bias=False` (S14). LLaVA (S29) keeps a
# CLIP ViT frozen and reads the hidden states of its *penultimate* layer,
# patch tokens only. `nn.record` keeps all `depth + 1` of them on the way.

# %%
clip_tower = VisionEncoder(32, 8, 3, dim=64, depth=4, num_heads=4, ln_pre=True,
                           activation="quick_gelu", patch_bias=False)
with no_grad():
    with nn.record(clip_tower) as rec:
        final = clip_tower(preprocess(shapes.train_images[:2]))
hidden = rec.hidden
print("hidden states:", len(hidden), "= depth + 1")
print("LLaVA's image tokens hidden[-2][:, 1:]:", hidden[-2][:, 1:].shape, "(B, N patches, D)")
