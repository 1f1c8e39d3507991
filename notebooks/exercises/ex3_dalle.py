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
# # Exercises · Part 3: DALL-E
#
# The two pieces of DALL-E's first stage: Gumbel-softmax sampling of codebook indices (S25) and the KL of the dVAE's posterior to the uniform prior (S23).
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
# ## Gumbel-softmax, relaxed and hard (S25)
#
# Relaxed and hard samples. Random output: the checker tests frequencies and the effect of tau with fixed seeds.

# %%
# EXERCISE: gumbel_softmax
def gumbel_softmax(logits, tau, hard, rng):
    """One Gumbel-softmax sample per row of logits (N, K), drawn with the NumPy Generator rng.

        g = -log(-log(u)),  u ~ Uniform(0, 1) independently for every entry
        y = softmax((logits + g) / tau)   over the last axis        (the relaxed sample)

    With hard=True return the one-hot vector of argmax(y) instead (the value
    DALL-E's straight-through estimator uses in the forward pass).
    Returns (N, K) in the dtype of logits.
    """
    raise NotImplementedError("gumbel_softmax")

# %%
check('gumbel_softmax', gumbel_softmax)

# %% [markdown]
# After the exercise: minivl's version is minivl/functional/softmax.py::gumbel_softmax.

# %% [markdown]
# ## the dVAE's KL to a uniform prior (S23)
#
# The KL term of the dVAE's ELBO, against a uniform prior over the codes.

# %%
# EXERCISE: dvae_kl
def dvae_kl(logits):
    """The dVAE's KL term: KL(q || uniform) summed over the grid, for each image.

    logits: (B, N, K), the encoder's logits over K codes at each of N grid positions.
    q = softmax(logits) over the codes; the prior is uniform, p = 1/K. Then

        KL(q || p) at one position = sum_k q_k * (log q_k - log(1/K)) = sum_k q_k log q_k + log K

    Returns (B,): the KL summed over the N positions, in the dtype of logits.
    The logits can be large (1e3): compute log q with a stable log-softmax.
    """
    raise NotImplementedError("dvae_kl")

# %%
check('dvae_kl', dvae_kl)

# %% [markdown]
# After the exercise: minivl's version is minivl/exercises/dalle.py::_dvae_kl (minivl's dVAE model is not written yet).
