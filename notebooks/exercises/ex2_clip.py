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
# # Exercises · Part 2: CLIP
#
# CLIP's symmetric contrastive loss with its gradient, exactly as the pseudo-code of slide S15, and a zero-shot classifier built from prompt templates (S16).
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
# ## symmetric InfoNCE, forward and gradient (S15)
#
# The loss and its gradients with respect to both embedding matrices.

# %%
# EXERCISE: info_nce
def info_nce(image_emb, text_emb, logit_scale):
    """CLIP's symmetric contrastive loss (slide S15) and its gradients, in NumPy.

    image_emb, text_emb: (n, d), L2-normalised rows; row i of each is a pair.
    logit_scale: a float t, the log of the inverse temperature.

        logits = exp(t) * image_emb @ text_emb.T             (n, n)
        loss_i = cross-entropy along axis 0 against labels  (softmax over each column's images:
                 each text finds its image)
        loss_t = cross-entropy along axis 1 against labels  (softmax over each row's texts:
                 each image finds its text)
        loss   = (loss_i + loss_t) / 2,   labels = arange(n), each CE averaged over the n columns/rows

    Returns (loss, d_image, d_text): the loss (a float, or a 0-d array in the
    embeddings' dtype) and its gradients with respect to image_emb and text_emb,
    (n, d) each (treat the embeddings as given: do not differentiate through the
    normalisation). exp(t) can be 100: keep the softmax stable.
    """
    raise NotImplementedError("info_nce")

# %%
check('info_nce', info_nce)

# %% [markdown]
# After the exercise: minivl's version is minivl/losses.py::info_nce.

# %% [markdown]
# ## zero-shot classifier from prompt templates (S16)
#
# The text tower as a classifier: prompts, normalisation, prompt ensembling. `encode_text` is a stand-in text tower the checker supplies.

# %%
# EXERCISE: zero_shot
def zero_shot(image_emb, class_names, templates, encode_text, logit_scale):
    """CLIP's zero-shot classifier from prompt templates (slide S16), with prompt ensembling.

    image_emb: (N, d) image embeddings (not necessarily unit length).
    class_names: list of C strings; templates: list of T strings with one "{}",
    e.g. "a photo of a {}.". encode_text(list of strings) -> (len, d) text
    embeddings (not unit length). logit_scale: the multiplier of the cosines (e.g. 100).

    For each class, fill every template with its name, encode the prompts,
    L2-normalise each prompt embedding, average them over the templates, and
    L2-normalise the mean: that is the class's weight vector (C, d). Then
        probs = softmax(logit_scale * normalise(image_emb) @ weights.T)   over the classes
    Returns probs (N, C).
    """
    raise NotImplementedError("zero_shot")

# %%
check('zero_shot', zero_shot)

# %% [markdown]
# After the exercise: minivl's version is minivl/models/clip.py::CLIP.zero_shot_classifier (and CLIP.predict).
