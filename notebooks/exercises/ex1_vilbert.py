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
# # Exercises · Part 1: ViLBERT
#
# ViLBERT's two additions to BERT: the co-attention layer in which words and image regions exchange keys and values (S06), and the 5-d location vector of each region (S05).
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
# ## ViLBERT co-attention (S06)
#
# The co-attentional transformer layer, without its residuals and norms.

# %%
# EXERCISE: co_attention
def co_attention(text, image, text_proj, image_proj, num_heads):
    """One ViLBERT co-attention layer (no residual, no layer norm): the streams exchange keys and values.

    text: (B, Nt, d) word states; image: (B, Ni, d) region states.
    text_proj, image_proj: (4, d, d), each stream's own [W_q, W_k, W_v, W_o].
    Each stream projects its own tokens: Q_t = text @ W_q(text), K_t, V_t likewise;
    Q_i = image @ W_q(image), K_i, V_i likewise. Then, with num_heads heads of
    size hs = d // num_heads and the scale 1 / sqrt(hs),

        text_out  = MultiHead(Q_t, K_i, V_i) @ W_o(text)     words attend over regions   (B, Nt, d)
        image_out = MultiHead(Q_i, K_t, V_t) @ W_o(image)    regions attend over words   (B, Ni, d)

    where MultiHead splits the channels into heads (split_heads), applies
    softmax(Q K^T * scale) V per head, and merges them (merge_heads).
    Returns (text_out, image_out), in the dtype of text.
    """
    raise NotImplementedError("co_attention")

# %%
check('co_attention', co_attention)

# %% [markdown]
# After the exercise: minivl's version is minivl/exercises/vilbert.py::_co_attention (on kernels/reference.py::attention_forward).

# %% [markdown]
# ## 5-d region location (S05)
#
# Each region's position as 5 numbers.

# %%
# EXERCISE: location_features
def location_features(boxes, image_size):
    """ViLBERT's 5-d spatial vector of each region: boxes (N, 4) as (x1, y1, x2, y2) in pixels -> (N, 5).

    For a square image of side image_size = W = H:

        [x1 / W, y1 / H, x2 / W, y2 / H, (x2 - x1) * (y2 - y1) / (W * H)]

    (the corners as fractions of the image, then the fraction of the image the box covers).
    Returns the features in the dtype of boxes.
    """
    raise NotImplementedError("location_features")

# %%
check('location_features', location_features)

# %% [markdown]
# After the exercise: minivl's version is minivl/data/boxes.py::location_features.
