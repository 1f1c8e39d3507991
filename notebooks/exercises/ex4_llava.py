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
# # Exercises · Part 4: LLaVA
#
# How LLaVA's instruction data becomes a training example: the conversation's token sequence and the label mask that trains the model on the assistant's answers only (S35, the paper's Table 2).
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
# ## LLaVA's label mask for a two-round conversation (S35)
#
# Build the ids and the -100 mask of a two-round conversation.

# %%
# EXERCISE: llava_labels
def llava_labels(system, num_image_tokens, turns, special):
    """The input ids and the labels of one LLaVA training conversation.

    system: list of ids of the system message; num_image_tokens: how many image
    tokens the projector produces; turns: list of (question_ids, answer_ids)
    rounds; special: dict with the ids "image", "user", "assistant" and "end".
    The sequence is

        system + [image] * num_image_tokens
        + for each round: [user] + question + [end] + [assistant] + answer + [end]

    The labels (aligned with the ids; the model shifts them itself) are -100
    everywhere except on the answer tokens and the [end] that closes each
    answer, which carry their own id: the model learns to answer, and to stop.
    Returns (ids, labels), two int64 arrays of the same length.
    """
    raise NotImplementedError("llava_labels")

# %%
check('llava_labels', llava_labels)

# %% [markdown]
# After the exercise: minivl's version is minivl/exercises/llava.py::_llava_labels (minivl's LLaVA model is not written yet).
