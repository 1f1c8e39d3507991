"""Visual question answering on the shapes world (lecture S02, S10).

Questions of six types, each answered by rule from the scene's ground truth:

======== ===================================== ==========================
count    how many red circles are there?       zero .. nine
colour   what colour is the small circle?      a colour
shape    what shape is the red object?         a shape
size     is the red circle small or large?     small / large
exist    is there a blue square?               yes / no
relation is the red circle left of the ring?   yes / no
======== ===================================== ==========================

A phrase that must pick out one object ("the small circle") always fits
exactly one object of the scene. Answers come from one fixed vocabulary
``ANSWERS``. As in VQA, each question gets 10 simulated annotator answers (at
most 3 of them wrong, drawn from plausible confusions) and a soft score per
answer, ``min(#annotators who gave it / 3, 1)``: the target of ViLBERT's
multi-label VQA head (trained with binary cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.language import (
    NUMBER_WORDS,
    UNIQUE_FIELDS,
    Description,
    check_kinds,
    choice,
    describe,
    relation_words,
    unique_descriptions,
)
from minivl.data.shapes import COLOURS, RELATIONS, SHAPES, SIZES, Scene, relation_holds

QUESTION_TYPES = ("count", "colour", "shape", "size", "exist", "relation")
ANSWERS = ("yes", "no") + NUMBER_WORDS + COLOURS + SHAPES + SIZES
ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}

_COUNT_FIELDS = ((), ("shape",), ("colour",), ("colour", "shape"), ("size",), ("size", "shape"))
_EXIST_FIELDS = (("shape",), ("colour",), ("colour", "shape"), ("size", "colour", "shape"))


@dataclass(frozen=True)
class Question:
    """A question, its answer, and what it is about (``other``: a relation's second object)."""

    qtype: str
    text: str
    answer: str
    subject: Description
    other: Description | None = None
    relation: str | None = None


@dataclass(frozen=True)
class VQAItem:
    """One VQA example; ``scores`` is ``(len(ANSWERS),)`` float32 soft targets."""

    question: str
    answer: str
    answer_id: int
    scores: np.ndarray
    qtype: str
    scene_index: int


def _unique_pairs(scene: Scene, field_sets) -> list[tuple[int, Description]]:
    return [(i, d) for i in range(len(scene)) for d in unique_descriptions(scene, i, field_sets)]


def _count(scene, rng, v):
    if rng.random() < 0.75:  # about something in the picture
        subject = describe(choice(rng, scene.objects), choice(rng, _COUNT_FIELDS))
    else:  # about anything, often absent
        subject = Description(
            shape=int(rng.integers(len(SHAPES))), colour=int(rng.integers(len(COLOURS)))
        )
    template = choice(rng, ("how many {} are there?", "how many {} are in the image?"))
    text = template.format(subject.words(plural_form=True, variant=v))
    return Question("count", text, NUMBER_WORDS[len(subject.select(scene))], subject)


def _colour(scene, rng, v):
    pairs = _unique_pairs(scene, (("shape",), ("size", "shape")))
    if not pairs:
        return None
    i, subject = choice(rng, pairs)
    template = choice(rng, ("what colour is the {}?", "what is the colour of the {}?"))
    text = template.format(subject.words(variant=v))
    return Question("colour", text, COLOURS[scene.objects[i].colour], subject)


def _shape(scene, rng, v):
    pairs = _unique_pairs(scene, (("colour",), ("size", "colour")))
    if not pairs:
        return None
    i, subject = choice(rng, pairs)
    text = f"what shape is the {subject.words(variant=v, noun='object')}?"
    return Question("shape", text, SHAPES[scene.objects[i].shape], subject)


def _size(scene, rng, v):
    pairs = _unique_pairs(scene, (("shape",), ("colour",), ("colour", "shape")))
    if not pairs:
        return None
    i, subject = choice(rng, pairs)
    template = choice(rng, ("what size is the {}?", "is the {} small or large?"))
    text = template.format(subject.words(variant=v, noun="object"))
    return Question("size", text, SIZES[scene.objects[i].size], subject)


def _exist(scene, rng, v):
    if rng.random() < 0.5:
        subject = describe(choice(rng, scene.objects), choice(rng, _EXIST_FIELDS))
    else:  # look for something absent; fall back to whatever was drawn last
        for _ in range(20):
            subject = Description(
                shape=int(rng.integers(len(SHAPES))), colour=int(rng.integers(len(COLOURS)))
            )
            if not subject.select(scene):
                break
    if rng.random() < 0.5:
        text = f"is there a {subject.words(variant=v)}?"
    else:
        text = f"are there any {subject.words(plural_form=True, variant=v)}?"
    return Question("exist", text, "yes" if subject.select(scene) else "no", subject)


def _relation(scene, rng, v):
    pairs = _unique_pairs(scene, UNIQUE_FIELDS)
    if len({i for i, _ in pairs}) < 2:
        return None
    i, a = choice(rng, pairs)
    j, b = choice(rng, [(j, d) for j, d in pairs if j != i])
    true = [r for r in RELATIONS if relation_holds(r, scene.objects[i], scene.objects[j])]
    relation = choice(rng, true) if true and rng.random() < 0.5 else choice(rng, RELATIONS)
    text = f"is the {a.words(variant=v)} {relation_words(relation, v)} the {b.words(variant=v)}?"
    answer = "yes" if relation_holds(relation, scene.objects[i], scene.objects[j]) else "no"
    return Question("relation", text, answer, a, b, relation)


_ASK = {
    "count": _count, "colour": _colour, "shape": _shape,
    "size": _size, "exist": _exist, "relation": _relation,
}  # fmt: skip


def ask(scene: Scene, qtype: str, rng: np.random.Generator) -> Question | None:
    """A random question of type ``qtype``, or None when the scene cannot support one."""
    check_kinds(qtype, QUESTION_TYPES, "question type")
    return _ASK[qtype](scene, rng, int(rng.integers(2)))


def _confusion(answer: str, rng: np.random.Generator) -> str:
    """A wrong answer an annotator might plausibly give instead of ``answer``."""
    if answer in ("yes", "no"):
        return "no" if answer == "yes" else "yes"
    for vocabulary in (COLOURS, SHAPES, SIZES):
        if answer in vocabulary:
            return choice(rng, [w for w in vocabulary if w != answer])
    n = NUMBER_WORDS.index(answer)  # a count is misjudged by one
    return NUMBER_WORDS[choice(rng, [m for m in (n - 1, n + 1) if 0 <= m < len(NUMBER_WORDS)])]


def soft_scores(
    answer: str, rng: np.random.Generator, n_annotators: int = 10, p_wrong: float = 0.05
) -> np.ndarray:
    """VQA soft targets ``(len(ANSWERS),)``: ``min(#annotators giving an answer / 3, 1)``.

    At most 3 of the annotators are wrong, so the true answer always scores 1.
    (VQA's official accuracy averages this over the 10 leave-one-out subsets.)
    """
    n_wrong = min(int(rng.binomial(n_annotators, p_wrong)), 3)
    given = [answer] * (n_annotators - n_wrong) + [_confusion(answer, rng) for _ in range(n_wrong)]
    votes = np.zeros(len(ANSWERS), dtype=np.float32)
    for a in given:
        votes[ANSWER_INDEX[a]] += 1
    return np.minimum(votes / 3, 1).astype(np.float32)


def vqa_items(
    scenes: list[Scene], rng: np.random.Generator, per_scene: int = 1, types=QUESTION_TYPES
) -> list[VQAItem]:
    """``per_scene`` questions per scene, types drawn uniformly from those the scene supports."""
    types = check_kinds(types, QUESTION_TYPES, "question type")
    items = []
    for index, scene in enumerate(scenes):
        for _ in range(per_scene):
            for qtype in rng.permutation(list(types)):  # the first type that fits the scene
                q = ask(scene, str(qtype), rng)
                if q is not None:
                    break
            if q is None:
                continue
            scores = soft_scores(q.answer, rng)
            items.append(VQAItem(q.text, q.answer, ANSWER_INDEX[q.answer], scores, q.qtype, index))
    return items
