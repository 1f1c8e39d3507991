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
# # Exercises · Part 0: BERT, GPT, ViT (softmax, attention, tokens, patches)
#
# The pieces every model of the lecture is built from: the softmax and its gradient, layer norm's backward pass, masked attention, heads, GPT's causal mask and key/value cache, a flash-attention forward in tiles, BPE tokens, BERT's masking and ViT's patches.
#
# Each exercise is a stub cell (fill in the function, in plain NumPy) and a
# check cell: `check(name, fn)` draws inputs you did not choose, compares
# your output with minivl's, and on a failure shows the smallest failing input,
# the expected and received values and a hint. The same checks run from a
# terminal: `minivl check NAME file.py`. minivl's own solution is named after
# each check; read it once yours passes.

# %%
import math  # noqa: F401 - for your solutions

import numpy as np  # noqa: F401

from minivl.exercises import check

# %% [markdown]
# ## softmax (S15)
#
# Write the softmax over the last axis. The checker draws inputs up to 1e3 in size.

# %%
# EXERCISE: softmax
def softmax(x):
    """Softmax over the last axis of ``x`` (any shape, float32 or float64).

        softmax(x)_i = exp(x_i) / sum_j exp(x_j)

    Returns an array of the same shape and dtype whose last axis sums to 1.
    It must not overflow: inputs can be as large as 1e3 or more.
    """
    raise NotImplementedError("softmax")

# %%
check('softmax', softmax)

# %% [markdown]
# After the exercise: minivl's version is kernels/reference.py::softmax_forward.

# %% [markdown]
# ## softmax backward (S15)
#
# Apply the softmax Jacobian to an upstream gradient without building the Jacobian.

# %%
# EXERCISE: softmax_backward
def softmax_backward(y, dy):
    """The gradient of a loss with respect to x, where y = softmax(x) over the last axis.

    ``y`` is the softmax output and ``dy`` the gradient with respect to y, both
    of the same shape. The Jacobian of softmax is dy_i/dx_j = y_i (delta_ij - y_j), so

        dx_j = y_j * (dy_j - sum_i dy_i y_i)

    Returns dx, same shape and dtype as y.
    """
    raise NotImplementedError("softmax_backward")

# %%
check('softmax_backward', softmax_backward)

# %% [markdown]
# After the exercise: minivl's version is kernels/reference.py::softmax_backward.

# %% [markdown]
# ## layer norm backward (S01)
#
# The gradient of layer norm through the mean and the variance.

# %%
# EXERCISE: layer_norm_backward
def layer_norm_backward(dy, x, gamma, eps):
    """Gradients of y = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps), over the last axis.

    ``x`` and ``dy`` have shape (..., C); ``gamma`` has shape (C,); mean and var
    (the biased variance) are taken over the last axis. With g = dy * gamma and
    rstd = 1 / sqrt(var + eps):

        dx     = rstd * (g - mean(g) - xhat * mean(g * xhat))      (means over the last axis)
        dgamma = sum of dy * xhat over every axis but the last      (C,)
        dbeta  = sum of dy over every axis but the last             (C,)

    Returns the tuple (dx, dgamma, dbeta), each in the dtype of x.
    """
    raise NotImplementedError("layer_norm_backward")

# %%
check('layer_norm_backward', layer_norm_backward)

# %% [markdown]
# After the exercise: minivl's version is kernels/reference.py::layer_norm_backward.

# %% [markdown]
# ## masked scaled dot-product attention (S01)
#
# Scaled dot-product attention with a key-padding mask; some drawn rows have every key masked.

# %%
# EXERCISE: attention
def attention(q, k, v, mask):
    """Scaled dot-product attention with a key-padding mask.

    q: (B, H, Nq, D) queries;  k, v: (B, H, Nk, D) keys and values;
    mask: (B, Nk) booleans, True where a key is real (attend to it), False for padding.

        scores = q @ k^T / sqrt(D)                      (B, H, Nq, Nk)
        scores = -inf where the key is masked out
        out    = softmax(scores over the keys) @ v      (B, H, Nq, D)

    A query whose keys are all masked out gets an output of zeros (not NaN).
    Returns out in the dtype of q.
    """
    raise NotImplementedError("attention")

# %%
check('attention', attention)

# %% [markdown]
# After the exercise: minivl's version is kernels/reference.py::attention_forward.

# %% [markdown]
# ## split the channels into heads (S06)
#
# Multi-head attention splits the channels into heads.

# %%
# EXERCISE: split_heads
def split_heads(x, num_heads):
    """Split the channels of x (B, N, C) into num_heads heads: returns (B, num_heads, N, C // num_heads).

    Head h holds channels h * hs ... (h + 1) * hs - 1 of every token, hs = C // num_heads.
    """
    raise NotImplementedError("split_heads")

# %%
check('split_heads', split_heads)

# %% [markdown]
# After the exercise: minivl's version is minivl/nn/attention.py (reshape to (B, N, H, hs), then transpose(0, 2, 1, 3)).

# %% [markdown]
# ## merge the heads back (S06)
#
# ... and merges them back.

# %%
# EXERCISE: merge_heads
def merge_heads(x):
    """The inverse of split_heads: x (B, H, N, hs) -> (B, N, H * hs), head h in channels h*hs ... (h+1)*hs - 1."""
    raise NotImplementedError("merge_heads")

# %%
check('merge_heads', merge_heads)

# %% [markdown]
# After the exercise: minivl's version is minivl/nn/attention.py (transpose(0, 2, 1, 3), then reshape to (B, N, C)).

# %% [markdown]
# ## causal mask with a cache offset (S01)
#
# GPT's mask, for queries that are the last positions of the sequence (what a cache needs).

# %%
# EXERCISE: causal_mask
def causal_mask(nq, nk):
    """GPT's causal mask as booleans (nq, nk): True where query i may attend to key j.

    The nk keys are positions 0 ... nk-1 and the nq queries are the *last* nq
    positions (nq <= nk; with a key/value cache the queries are the newest tokens),
    so query i sits at position nk - nq + i and sees every key j <= nk - nq + i,
    itself included.
    """
    raise NotImplementedError("causal_mask")

# %%
check('causal_mask', causal_mask)

# %% [markdown]
# After the exercise: minivl's version is kernels/reference.py::attention_mask.

# %% [markdown]
# ## a key/value-cache decoding step (S01)
#
# One decoding step: append to the cache, attend over everything so far.

# %%
# EXERCISE: kv_cache_step
def kv_cache_step(q, k_new, v_new, k_cache, v_cache):
    """One step of GPT decoding with a key/value cache.

    q, k_new, v_new: (B, H, 1, D), the query, key and value of the newest token;
    k_cache, v_cache: (B, H, T, D), the keys and values of the T earlier tokens (T may be 0).

    Append the new key and value to the caches (at the end, along the token
    axis), then let the new token attend to all T + 1 keys (scale 1 / sqrt(D)).
    Returns (out (B, H, 1, D), k_cache (B, H, T+1, D), v_cache (B, H, T+1, D)).
    """
    raise NotImplementedError("kv_cache_step")

# %%
check('kv_cache_step', kv_cache_step)

# %% [markdown]
# After the exercise: minivl's version is kernels/reference.py::attention_forward (causal=True: queries are the last positions).

# %% [markdown]
# ## online-softmax attention in tiles (S01)
#
# The online softmax: attention over blocks of keys with a running maximum and sum, never the full score matrix.

# %%
# EXERCISE: flash_attention
def flash_attention(q, k, v, block_size):
    """Attention softmax(q k^T / sqrt(D)) v computed over blocks of keys with an online softmax.

    q: (B, H, Nq, D); k, v: (B, H, Nk, D); no mask. Visit the keys in blocks of
    block_size (the last block may be shorter) and never build the full
    (Nq, Nk) score matrix. Keep, for every query, a running maximum m, a running
    sum l of exp(s - m) and an accumulator acc of exp(s - m) @ v; when a block
    raises the maximum to m', rescale l and acc by exp(m - m'). At the end
    out = acc / l and lse = m + log(l), the log-sum-exp of each row of scores.

    Returns (out (B, H, Nq, D), lse (B, H, Nq)), in the dtype of q.
    """
    raise NotImplementedError("flash_attention")

# %%
check('flash_attention', flash_attention)

# %% [markdown]
# After the exercise: minivl's version is kernels/numba/attention.py (the tiled kernel); kernels/reference.py::attention_forward (the math).

# %% [markdown]
# ## one BPE merge step (S26)
#
# The one operation byte-pair encoding is made of.

# %%
# EXERCISE: bpe_merge
def bpe_merge(ids, pair, new_id):
    """Replace every occurrence of the adjacent pair (a, b) in the list ``ids`` by ``new_id``.

    Occurrences are taken greedily from the left and do not overlap: with
    pair (7, 7), [7, 7, 7] becomes [new_id, 7]. Returns a new list of ints.
    """
    raise NotImplementedError("bpe_merge")

# %%
check('bpe_merge', bpe_merge)

# %% [markdown]
# After the exercise: minivl's version is minivl/tokenizers/merge.py::merge_pair.

# %% [markdown]
# ## BPE training on a small text (S26)
#
# Learn merges from a small text, ties broken by the smallest pair.

# %%
# EXERCISE: bpe_train
def bpe_train(text, num_merges):
    """Learn num_merges BPE merges from ``text`` (a str), on its UTF-8 bytes.

    Start from ids = list(text.encode("utf-8")) (one chunk, no pre-splitting).
    At step r: count every adjacent pair of ids; take the most frequent pair,
    breaking ties by the smallest pair (compare (a, b) as tuples); replace it by
    the new id 256 + r (left to right, as bpe_merge does). Stop early when no
    pair is left. Returns the list of merged pairs [(a, b), ...] in order.
    """
    raise NotImplementedError("bpe_train")

# %%
check('bpe_train', bpe_train)

# %% [markdown]
# After the exercise: minivl's version is minivl/tokenizers/training.py::train_merges_naive (and train_merges, the fast one).

# %% [markdown]
# ## BERT's 80/10/10 masking (S08)
#
# BERT's 80/10/10 corruption. Random output: the checker measures the rates on a large batch with fixed seeds.

# %%
# EXERCISE: bert_masking
def bert_masking(ids, special_ids, vocab_size, mask_id, rng):
    """BERT's masked-LM corruption of a batch of token ids (B, N) (integers).

    Every token whose id is not in special_ids is *chosen* with probability 0.15
    (special tokens, [MASK] among them, never are). A chosen token becomes
    mask_id with probability 0.8, a random id drawn uniformly from the
    non-special ids of range(vocab_size) with probability 0.1, and stays
    itself with probability 0.1. Use the NumPy Generator ``rng`` for every draw.

    Returns (inputs, labels), both (B, N) integers: inputs is the corrupted
    batch; labels holds the original id at chosen positions and -100 elsewhere.
    """
    raise NotImplementedError("bert_masking")

# %%
check('bert_masking', bert_masking)

# %% [markdown]
# After the exercise: minivl's version is minivl/models/bert.py::mask_tokens.

# %% [markdown]
# ## ViT patches (S14)
#
# A ViT reads an image as a sequence of flattened patches.

# %%
# EXERCISE: patchify
def patchify(images, patch_size):
    """Cut images (B, C, H, W) into non-overlapping patch_size x patch_size patches.

    H and W are multiples of P = patch_size. Patches are numbered row by row
    (left to right, then top to bottom): N = (H / P) * (W / P). Each patch is
    flattened in (C, P, P) order: channel first, then row, then column.
    Returns (B, N, C * P * P), in the dtype of images.
    """
    raise NotImplementedError("patchify")

# %%
check('patchify', patchify)

# %% [markdown]
# After the exercise: minivl's version is minivl/models/vision.py::patchify.
