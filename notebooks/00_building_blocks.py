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
# # 00 · Building blocks: autograd and attention
#
# Everything in the lecture (S01–S38) is built from two ideas that this notebook
# makes concrete before any model appears:
#
# 1. **reverse-mode automatic differentiation** — how a loss's gradient reaches
#    every weight (`minivl/tensor.py`);
# 2. **scaled dot-product attention** — the operation every transformer in the
#    lecture repeats (`minivl/functional/attention.py`), and its multi-head form
#    (`minivl/nn/attention.py`), which ViLBERT's co-attention (S06) reuses.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minivl as mv
from minivl import functional as F
from minivl import nn

mv.manual_seed(0)

# %% [markdown]
# ## Autograd in ten lines
#
# A scalar version first. Each value remembers its parents and a function that
# pushes its gradient to them; `backward` visits the nodes in reverse
# topological order. This is the whole idea behind `mv.Tensor.backward`; minivl
# only swaps scalars for arrays and writes one `Function` per operation.


# %%
class Value:
    def __init__(self, v, parents=(), push=lambda g: ()):
        self.v, self.parents, self.push, self.grad = v, parents, push, 0.0

    def __mul__(self, o):
        return Value(self.v * o.v, (self, o), lambda g: (g * o.v, g * self.v))

    def __add__(self, o):
        return Value(self.v + o.v, (self, o), lambda g: (g, g))

    def backward(self):
        order, seen = [], set()

        def visit(n):
            if id(n) not in seen:
                seen.add(id(n))
                [visit(p) for p in n.parents]
                order.append(n)

        visit(self)
        self.grad = 1.0
        for n in reversed(order):
            for p, g in zip(n.parents, n.push(n.grad)):
                p.grad += g


a, b = Value(2.0), Value(-3.0)
y = a * b + b * b
y.backward()
print("tiny engine:", a.grad, b.grad)

# %% [markdown]
# The same expression with minivl tensors gives the same gradients:
# dy/da = b = -3 and dy/db = a + 2b = -4.

# %%
ta = mv.tensor(2.0, requires_grad=True)
tb = mv.tensor(-3.0, requires_grad=True)
(ta * tb + tb * tb).backward()
print("minivl:     ", ta.grad, tb.grad)

# %% [markdown]
# ### Checking a gradient numerically
# Every op in minivl is tested the way CS231n teaches: in float64, compare the
# analytic gradient with central differences `(f(x+h) - f(x-h)) / 2h`.
# `mv.testing.gradcheck` raises with the worst index when they disagree.

# %%
x = mv.tensor(np.random.default_rng(0).standard_normal((3, 5)), requires_grad=True)
print("softmax gradcheck:", mv.testing.gradcheck(lambda t: F.softmax(t, axis=-1), x))

# %% [markdown]
# ## Scaled dot-product attention from minivl ops
#
# Queries ask, keys answer, values carry the content:
# $\mathrm{Attention}(Q,K,V) = \mathrm{softmax}(QK^\top/\sqrt{d})\,V$.
# Written out with minivl ops, step by step (shapes in the comments):

# %%
B, H, N, D = 1, 1, 6, 8
rng = np.random.default_rng(1)
q = mv.tensor(rng.standard_normal((B, H, N, D)).astype(np.float32), requires_grad=True)
k = mv.tensor(rng.standard_normal((B, H, N, D)).astype(np.float32))
v = mv.tensor(rng.standard_normal((B, H, N, D)).astype(np.float32))

scores = q @ k.swapaxes(-1, -2) * (1 / np.sqrt(D))  # (B, H, N, N)
weights = F.softmax(scores, axis=-1)  # each row sums to 1
out = weights @ v  # (B, H, N, D)

library = F.scaled_dot_product_attention(q, k, v)
print("by hand == library:", np.allclose(out.data, library.data, atol=1e-6))

# %% [markdown]
# The library call takes the *fused* path (one kernel forward and backward,
# FlashAttention-style on the numba and cuda backends) unless you ask for the
# weights. Masks are what make BERT and GPT differ: a causal mask hides the
# future, a padding mask hides padding tokens.

# %%
_, w_causal = F.scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
pad = np.array([[True, True, True, True, False, False]])
_, w_pad = F.scaled_dot_product_attention(q, k, v, key_padding_mask=pad, return_weights=True)

fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
for ax, w, title in zip(axes, [weights, w_causal, w_pad], ["no mask", "causal (GPT)", "padding (BERT)"]):
    ax.imshow(w.data[0, 0], cmap="viridis", vmin=0, vmax=1)
    ax.set(title=title, xlabel="key", ylabel="query")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Multi-head attention
# `nn.MultiHeadAttention` projects the input into several smaller heads, runs
# attention in each, and mixes the heads back with `out_proj`. Queries and
# keys/values may come from different sequences of different widths — that is
# cross-attention, and ViLBERT's co-attention (S06) is two of them. A module
# returns its output only; `nn.record` keeps the attention weights on the way.

# %%
mha = nn.MultiHeadAttention(dim=16, num_heads=4, kv_dim=12)
text = mv.tensor(rng.standard_normal((1, 5, 16)).astype(np.float32))
image_regions = mv.tensor(rng.standard_normal((1, 7, 12)).astype(np.float32))
with nn.record(mha) as rec:
    y = mha(text, image_regions)
w = rec.weights[0]
print("output", y.shape, "weights", w.shape)  # (1, 5, 16), (1, 4, 5, 7)

fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
for h, ax in enumerate(axes):
    ax.imshow(w.data[0, h], cmap="magma")
    ax.set(title=f"head {h}", xlabel="region", ylabel="word")
plt.tight_layout()
plt.show()

# %% [markdown]
# Gradients flow through every projection — the training loops of the later
# notebooks are nothing more than this, repeated:

# %%
y.sum().backward()
print({name: p.grad.shape for name, p in mha.named_parameters() if p.grad is not None})
