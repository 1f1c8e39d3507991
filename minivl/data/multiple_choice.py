"""Multiple choice with a rationale, VCR-style (lecture S10: Q->A, then QA->R).

Each item has a question, four answers of which one is right, and four
rationales of which one is true and justifies the answer; the three wrong
rationales are one-word FOILs of the true one. Two kinds:

- ``"count"``: "how many red shapes are there?"
  answers "there are two red shapes.", "there is one red shape.", ...;
  rationale "the image shows a red circle and a small red square."
- ``"relation"``: "what is to the left of the blue square?" (exactly one
  object is), answers "a red circle.", "a green ring.", ...;
  rationale "a red circle is to the left of a blue square."

ViLBERT scores each (question, answer) pair in one pass and takes a softmax
over the four (FIDELITY: VCR head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.captions import Caption
from minivl.data.foil import foil_candidates
from minivl.data.language import (
    NUMBER_WORDS,
    Description,
    check_kinds,
    choice,
    describe,
    relation_words,
    unique_descriptions,
)
from minivl.data.shapes import COLOURS, RELATIONS, SHAPES, Scene, relation_holds

MC_KINDS = ("count", "relation")
_N_CHOICES = 4


@dataclass(frozen=True)
class MultipleChoiceItem:
    question: str
    answers: tuple[str, ...]  # 4 choices
    answer_label: int  # index of the right answer
    rationales: tuple[str, ...]  # 4 choices
    rationale_label: int  # index of the true rationale
    kind: str
    scene_index: int


def _count_answer(d: Description, n: int) -> str:
    verb = "is" if n == 1 else "are"
    return f"there {verb} {d.count_words(n)}."


def _wrong_rationales(caption: Caption, scene: Scene, rng) -> list[str] | None:
    texts = sorted({c.text for cs in foil_candidates(caption, scene).values() for c in cs})
    if len(texts) < _N_CHOICES - 1:
        return None
    return [texts[i] for i in rng.choice(len(texts), _N_CHOICES - 1, replace=False)]


def _count_item(scene, rng):
    d = describe(
        choice(rng, scene.objects), choice(rng, (("shape",), ("colour",), ("colour", "shape")))
    )
    matching = d.select(scene)
    n = len(matching)
    nearest = sorted(range(len(NUMBER_WORDS)), key=lambda m: (abs(m - n), m))  # n first
    answers = [_count_answer(d, m) for m in nearest[:_N_CHOICES]]
    phrases = tuple(describe(scene.objects[i], ("size", "colour", "shape")) for i in matching)
    rationale = Caption("list", phrases, template=4)  # "the image shows ..."
    question = f"how many {d.words(plural_form=True)} are there?"
    return question, answers, rationale


def _relation_item(scene, rng):
    options = []  # (landmark phrase, relation, the one object standing in it)
    for j in range(len(scene)):
        for landmark in unique_descriptions(scene, j):
            for relation in RELATIONS:
                fitting = [
                    i for i, obj in enumerate(scene.objects)
                    if i != j and relation_holds(relation, obj, scene.objects[j])
                ]  # fmt: skip
                if len(fitting) == 1:
                    options.append((j, landmark, relation, fitting[0]))
    if not options:
        return None
    j, landmark, relation, target = choice(rng, options)

    def right(d: Description) -> bool:  # does d fit an object in the relation?
        return any(
            relation_holds(relation, scene.objects[i], scene.objects[j])
            for i in d.select(scene)
            if i != j
        )

    correct = describe(scene.objects[target], ("colour", "shape"))
    wrong = [
        Description(shape=s, colour=c)
        for s in range(len(SHAPES))
        for c in range(len(COLOURS))
        if not right(Description(shape=s, colour=c))
    ]
    wrong = [wrong[i] for i in rng.choice(len(wrong), _N_CHOICES - 1, replace=False)]
    answers = [f"a {d.words()}." for d in [correct, *wrong]]
    rationale = Caption(
        "relation", (correct, landmark), relation, template=1
    )  # "{a} is {rel} {b}."
    question = f"what is {relation_words(relation)} the {landmark.words()}?"
    return question, answers, rationale


def multiple_choice_item(
    scene: Scene, scene_index: int, kind: str, rng: np.random.Generator
) -> MultipleChoiceItem | None:
    """One item of ``kind`` with shuffled choices, or None when the scene cannot support it."""
    check_kinds(kind, MC_KINDS, "multiple-choice kind")
    made = _count_item(scene, rng) if kind == "count" else _relation_item(scene, rng)
    if made is None:
        return None
    question, answers, rationale = made
    wrong_rationales = _wrong_rationales(rationale, scene, rng)
    if wrong_rationales is None:
        return None
    answer_order = rng.permutation(_N_CHOICES)  # the right choice starts at 0
    rationale_order = rng.permutation(_N_CHOICES)
    rationales = [rationale.text, *wrong_rationales]
    return MultipleChoiceItem(
        question=question,
        answers=tuple(answers[i] for i in answer_order),
        answer_label=int(np.argmin(answer_order)),
        rationales=tuple(rationales[i] for i in rationale_order),
        rationale_label=int(np.argmin(rationale_order)),
        kind=kind,
        scene_index=scene_index,
    )


def multiple_choice_items(
    scenes: list[Scene], rng: np.random.Generator, kinds=MC_KINDS
) -> list[MultipleChoiceItem]:
    """One item per scene, of a random kind the scene supports (others are skipped)."""
    kinds = check_kinds(kinds, MC_KINDS, "multiple-choice kind")
    out = []
    for index, scene in enumerate(scenes):
        for kind in rng.permutation(list(kinds)):
            item = multiple_choice_item(scene, index, str(kind), rng)
            if item is not None:
                out.append(item)
                break
    return out
