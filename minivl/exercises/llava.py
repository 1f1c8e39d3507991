"""The LLaVA exercise: build a two-round conversation and its label mask (lecture S30-S35).

Liu et al. (2023), "Visual Instruction Tuning", section 4 and Table 2: the
sequence is a system message, the image tokens, then for each round
"Human: question <stop> Assistant: answer <stop>"; the model is trained with
the autoregressive loss on the assistant's answers and their stop tokens
only, so everything else is labelled -100 (ignored by the cross-entropy).
minivl has no LLaVA model yet: the reference is written here.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake

LLAVA_LABELS_STUB = '''
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
'''

SPECIAL = {"image": 5, "user": 1, "assistant": 2, "end": 3}
IGNORE = -100


def _llava_labels(system, num_image_tokens, turns, special, label_prefix=False, label_end=True,
                  rounds="all", label_questions=False, shift=False):
    ids, labels = list(system) + [special["image"]] * num_image_tokens, [IGNORE] * (len(system) + num_image_tokens)
    for r, (question, answer) in enumerate(turns):
        learn = rounds == "all" or r == len(turns) - 1
        human = [special["user"], *question, special["end"]]
        ids += human
        labels += human if label_questions else [IGNORE] * len(human)
        ids += [special["assistant"], *answer, special["end"]]
        labels += [special["assistant"] if label_prefix and learn else IGNORE]
        labels += list(answer) if learn else [IGNORE] * len(answer)
        labels += [special["end"] if label_end and learn else IGNORE]
    labels = np.array(labels, dtype=np.int64)
    if shift:
        labels = np.append(labels[1:], IGNORE)
    return np.array(ids, dtype=np.int64), labels


def _llava_pairs(system, num_image_tokens, turns, special):
    """Token by token, as (id, learn?) pairs."""
    pairs = [(t, False) for t in system] + [(special["image"], False)] * num_image_tokens
    for question, answer in turns:
        pairs += [(t, False) for t in [special["user"], *question, special["end"], special["assistant"]]]
        pairs += [(t, True) for t in [*answer, special["end"]]]
    ids = np.array([t for t, _ in pairs], dtype=np.int64)
    return ids, np.array([t if learn else -100 for t, learn in pairs], dtype=np.int64)


words = st.lists(st.integers(10, 40), min_size=1, max_size=4)
LLAVA_INPUTS = st.fixed_dictionaries({
    "system": st.lists(st.integers(10, 40), max_size=3),
    "num_image_tokens": st.integers(0, 4),
    "turns": st.lists(st.tuples(words, words), min_size=2, max_size=3),  # two rounds, sometimes three
    "special": st.just(SPECIAL),
})

LLAVA_LABELS = Exercise(
    name="llava_labels", slide="S35", part="ex4_llava", title="LLaVA's label mask for a two-round conversation",
    stub=LLAVA_LABELS_STUB, reference=_llava_labels,
    solution="minivl/exercises/llava.py::_llava_labels (minivl's LLaVA model is not written yet)",
    inputs=LLAVA_INPUTS,
    mistakes=[
        Mistake("assistant prefix labelled", "the [assistant] token is given, not predicted: label the answer "
                "and its [end] only.", lambda *a: _llava_labels(*a, label_prefix=True)),
        Mistake("stop token not labelled", "label the [end] after each answer too, or the model never learns to "
                "stop talking.", lambda *a: _llava_labels(*a, label_end=False)),
        Mistake("last round only", "every round's answer is a target, not only the last one.",
                lambda *a: _llava_labels(*a, rounds="last")),
        Mistake("questions labelled", "the human turns are context: label them -100.",
                lambda *a: _llava_labels(*a, label_questions=True)),
        Mistake("labels shifted", "keep labels aligned with ids (labels[i] is ids[i] or -100); the loss shifts "
                "them by one itself.", lambda *a: _llava_labels(*a, shift=True)),
    ],
)
LLAVA_LABELS.alternative = _llava_pairs

EXERCISES = [LLAVA_LABELS]
