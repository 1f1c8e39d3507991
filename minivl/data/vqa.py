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

Only the image decides (``balance.py``): each question is drawn answer-first.
Every question the scene allows is listed with its answer and its group (the
type, which attributes it names, any size and relation word: what the
wording gives away); a group is drawn, then an answer, uniformly among the
group's answers that are not ahead of the rest, then a question with that
answer. So "is there a ...?" is "yes" half the time whatever attributes it
names, counts are level over ``zero .. max_count`` in every group, and a
text-only reader is at chance (``tests/data/test_blind_baselines.py``).
"bigger" and "smaller" questions name no sizes (sizes would give them away).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from minivl.data.balance import Balancer, Candidate, pick
from minivl.data.language import (
    NUMBER_WORDS,
    UNIQUE_FIELDS,
    Description,
    check_kinds,
    choice,
    relation_words,
    unique_descriptions,
    with_field,
)
from minivl.data.shapes import COLOURS, RELATIONS, SHAPES, SIZES, Scene, relation_holds

QUESTION_TYPES = ("count", "colour", "shape", "size", "exist", "relation")
ANSWERS = ("yes", "no") + NUMBER_WORDS + COLOURS + SHAPES + SIZES
ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}

# "how many shapes" is left out: it could never be "zero".
_COUNT_FIELDS = (
    ("shape",), ("colour",), ("size",), ("colour", "shape"), ("size", "shape"), ("size", "colour"),
)  # fmt: skip
_EXIST_FIELDS = (
    ("shape",), ("colour",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"),
)  # fmt: skip
_ANSWER_SETS = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "exist": ("yes", "no"),
                "relation": ("yes", "no")}  # fmt: skip
_TEMPLATES = {
    "count": ("how many {} are there?", "how many {} are in the image?"),
    "colour": ("what colour is the {}?", "what is the colour of the {}?"),
    "shape": ("what shape is the {}?",),
    "size": ("what size is the {}?", "is the {} small or large?"),
    "exist": ("is there a {}?", "are there any {}?"),
}


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


def _fields(d: Description) -> tuple:
    """What a phrase reveals beyond its colour and shape words: which fields, and its size."""
    return (d.shape is not None, d.colour is not None, d.size)


@cache
def every_description(fields: tuple[str, ...]) -> tuple[Description, ...]:
    """Every phrase naming exactly ``fields`` (all values of each)."""
    ranges = {"shape": range(len(SHAPES)), "colour": range(len(COLOURS)), "size": range(len(SIZES))}
    out = [Description()]
    for f in fields:
        out = [with_field(d, f, v) for d in out for v in ranges[f]]
    return tuple(out)


def _candidates(scene: Scene, qtype: str, max_count: int) -> list[Candidate]:
    """Every question of ``qtype`` the scene supports (payload: subject, other, relation)."""
    if qtype == "count":
        return [
            Candidate(("count", _fields(d)), NUMBER_WORDS[n], (d, None, None))
            for fields in _COUNT_FIELDS
            for d in every_description(fields)
            if (n := len(d.select(scene))) <= max_count
        ]  # fmt: skip
    if qtype == "exist":
        return [
            Candidate(("exist", _fields(d)), "yes" if d.select(scene) else "no", (d, None, None))
            for fields in _EXIST_FIELDS
            for d in every_description(fields)
        ]  # fmt: skip
    if qtype in ("colour", "shape", "size"):
        field_sets = {
            "colour": (("shape",), ("size", "shape")),
            "shape": (("colour",), ("size", "colour")),
            "size": (("shape",), ("colour",), ("colour", "shape")),
        }[qtype]
        return [
            Candidate((qtype, _fields(d)), _ANSWER_SETS[qtype][getattr(scene.objects[i], qtype)],
                      (d, None, None))
            for i, d in _unique_pairs(scene, field_sets)
        ]  # fmt: skip
    pairs = _unique_pairs(scene, UNIQUE_FIELDS)
    out = []
    for i, a in pairs:
        for j, b in pairs:
            if i == j:
                continue
            for relation in RELATIONS:
                if relation in ("bigger", "smaller") and (a.size is not None or b.size is not None):
                    continue
                holds = relation_holds(relation, scene.objects[i], scene.objects[j])
                group = ("relation", relation, _fields(a), _fields(b))
                out.append(Candidate(group, "yes" if holds else "no", (a, b, relation)))
    return out


def _unique_pairs(scene: Scene, field_sets) -> list[tuple[int, Description]]:
    return [(i, d) for i in range(len(scene)) for d in unique_descriptions(scene, i, field_sets)]


def _write(qtype: str, subject, other, relation, template: int, v: int) -> str:
    """The question's words (``v``: the synonym variant of sizes and relations)."""
    if qtype == "relation":
        a, b = subject.words(variant=v), other.words(variant=v)
        return f"is the {a} {relation_words(relation, v)} the {b}?"
    noun = "object" if qtype in ("shape", "size") else "shape"
    plural = qtype == "count" or (qtype == "exist" and template == 1)  # "are there any ...?"
    phrase = subject.words(plural_form=plural, variant=v, noun=noun)
    return _TEMPLATES[qtype][template].format(phrase)


def ask(
    scene: Scene,
    qtype: str,
    rng: np.random.Generator,
    balancer: Balancer | None = None,
    max_count: int = len(NUMBER_WORDS) - 1,
) -> Question | None:
    """A question of type ``qtype`` drawn answer-first, or None when the scene supports none.

    Without a ``balancer`` the answer is uniform over those the scene can
    give; with one, it is also kept level with the answers given before.
    """
    check_kinds(qtype, QUESTION_TYPES, "question type")
    answers = NUMBER_WORDS[: max_count + 1] if qtype == "count" else _ANSWER_SETS[qtype]
    picked = pick(_candidates(scene, qtype, max_count), answers, rng, balancer)
    if picked is None:
        return None
    v = int(rng.integers(2))
    template = int(rng.integers(len(_TEMPLATES.get(qtype, (None,)))))
    subject, other, relation = picked.payload
    text = _write(qtype, subject, other, relation, template, v)
    return Question(qtype, text, picked.answer, subject, other, relation)


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
    scenes: list[Scene],
    rng: np.random.Generator,
    per_scene: int = 1,
    types=QUESTION_TYPES,
    max_count: int | None = None,
) -> list[VQAItem]:
    """``per_scene`` questions per scene, each of the first type (in a random order) that the
    scene supports with a balanced answer; answers balanced per question group.

    Counts range over ``zero .. max_count`` (default: the most objects in a scene).
    """
    types = check_kinds(types, QUESTION_TYPES, "question type")
    if max_count is None:
        max_count = max(len(s) for s in scenes) if scenes else 0
    if not 0 <= max_count < len(NUMBER_WORDS):
        raise ValueError(f"max_count must be in 0..{len(NUMBER_WORDS) - 1}, got {max_count}")
    balancer = Balancer()
    items = []
    for index, scene in enumerate(scenes):
        for _ in range(per_scene):
            for qtype in rng.permutation(list(types)):  # the first type that fits the scene
                q = ask(scene, str(qtype), rng, balancer, max_count)
                if q is not None:
                    break
            if q is None:
                continue
            scores = soft_scores(q.answer, rng)
            items.append(VQAItem(q.text, q.answer, ANSWER_INDEX[q.answer], scores, q.qtype, index))
    return items
