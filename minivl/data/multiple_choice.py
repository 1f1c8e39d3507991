"""Multiple choice with a rationale, VCR-style (lecture S10: Q->A, then QA->R).

Each item has a question, four answers of which one is right, and four
rationales of which one is true and justifies the answer. Two kinds:

- ``"count"``: "how many red shapes are there?", answers "there are two red
  shapes.", "there are no red shapes.", ...; rationale "the image shows a
  small red circle, a large red square and a small blue ring." (every object);
- ``"relation"``: "what is to the left of the blue square?" (exactly one
  object is), answers "a red circle.", "a green ring.", ...; rationale "a red
  circle is to the left of the blue square, and a green cross is not."
  (needs a third object: the rationale names the ones not in the relation).

Only the image decides (Zellers et al. (2019) found VCR's wrong answers
recoverable from the text and matched them adversarially; we can make them
exactly as likely as the right one instead):

- count answers: the true count is drawn answer-first and level over
  ``zero .. max_count`` (``vqa.ask`` with a ``Balancer``); the other three
  options are counts drawn uniformly from the rest of that range, not the
  counts nearest the truth;
- rationales: every wrong rationale is written like the true one from
  made-up objects drawn the way the scene's own are (uniform attributes; for
  a count, exactly as many fitting the question as the answer says; for a
  relation, none fitting the landmark's phrase, which fits one object only,
  and no sizes, which where objects stand would give away; so every
  rationale agrees with the question and the answer), and differs from the
  truth as a whole list, not by one word, so no option is the "centre" of
  the others.

ViLBERT scores each (question, answer) pair in one pass and takes a softmax
over the four (FIDELITY: VCR head).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from minivl.data.balance import Balancer
from minivl.data.language import (
    NUMBER_WORDS,
    UNIQUE_FIELDS,
    Description,
    check_kinds,
    choice,
    describe,
    join_list,
    relation_words,
)
from minivl.data.shapes import COLOURS, RELATIONS, SHAPES, SIZES, Scene, relation_holds
from minivl.data.vqa import ask

MC_KINDS = ("count", "relation")
_N_CHOICES = 4
_FULL = ("size", "colour", "shape")


@dataclass(frozen=True)
class MultipleChoiceItem:
    question: str
    answers: tuple[str, ...]  # 4 choices
    answer_label: int  # index of the right answer
    rationales: tuple[str, ...]  # 4 choices
    rationale_label: int  # index of the true rationale
    kind: str
    scene_index: int
    # what a count question counts by: "count:" and the fields its phrase names ("count:size" for
    # "how many small shapes"); "relation" for a relation item (a finer group than ``kind``)
    detail: str = ""


def _count_answer(d: Description, n: int) -> str:
    verb = "is" if n == 1 else "are"
    return f"there {verb} {d.count_words(n)}."


def _random_object(rng, keep=lambda d: True) -> Description:
    """A made-up object with uniform attributes, drawn again until ``keep(it)``."""
    while True:
        d = Description(
            shape=int(rng.integers(len(SHAPES))),
            colour=int(rng.integers(len(COLOURS))),
            size=int(rng.integers(len(SIZES))),
        )
        if keep(d):
            return d


def _key(phrases) -> tuple:
    return tuple(sorted((p.shape, p.colour, p.size) for p in phrases))


def _made_up_lists(true_phrases, draw, rng, n: int = _N_CHOICES - 1, tries: int = 100):
    """``n`` lists from ``draw()``, each different as a multiset from the truth and each other."""
    seen, out = {_key(true_phrases)}, []
    for _ in range(tries):
        phrases = draw()
        if _key(phrases) not in seen:
            seen.add(_key(phrases))
            out.append(phrases)
            if len(out) == n:
                return out
    return None


def _count_item(scene, rng, balancer, max_count):
    q = ask(scene, "count", rng, balancer, max_count)
    if q is None:
        return None
    d, n, k = q.subject, NUMBER_WORDS.index(q.answer), len(scene)
    others = [m for m in range(max(max_count, _N_CHOICES - 1) + 1) if m != n]
    counts = [n, *(int(m) for m in rng.choice(others, _N_CHOICES - 1, replace=False))]
    answers = [_count_answer(d, m) for m in counts]

    def made_up():  # n objects the question counts, k - n it does not, in a random order
        phrases = [_random_object(rng, d.matches) for _ in range(n)]
        phrases += [_random_object(rng, lambda o: not d.matches(o)) for _ in range(k - n)]
        return [phrases[i] for i in rng.permutation(k)]

    truth = [describe(scene.objects[i], _FULL) for i in rng.permutation(k)]
    wrong = _made_up_lists(truth, made_up, rng)
    if wrong is None:
        return None
    rationales = [f"the image shows {join_list(['a ' + p.words() for p in ps])}." for ps in [truth, *wrong]]
    return q.text, answers, rationales, "count:" + "+".join(f for f in _FULL if getattr(d, f) is not None)


def _relation_item(scene, rng, tries: int = 30):
    """The landmark's phrase (which attributes it names) and the relation are drawn before
    looking, then kept if the phrase fits the landmark alone and one object stands in the
    relation: how the phrase was chosen then says nothing about the other objects."""
    if len(scene) < 3:
        return None
    for _ in range(tries):
        j, relation = int(rng.integers(len(scene))), choice(rng, RELATIONS)
        landmark = describe(scene.objects[j], choice(rng, UNIQUE_FIELDS))
        fitting = [
            i for i, obj in enumerate(scene.objects)
            if i != j and relation_holds(relation, obj, scene.objects[j])
        ]  # fmt: skip
        if landmark.select(scene) == [j] and len(fitting) == 1:
            target = fitting[0]
            break
    else:
        return None

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
    rest = [i for i in rng.permutation(len(scene)).tolist() if i not in (j, target)]
    # the objects left over are named without their sizes: where objects stand depends on
    # their size, so "not left of the square" would make a leftover's size guessable
    truth = [describe(scene.objects[i], ("colour", "shape")) for i in rest]

    def leftover() -> Description:  # made up like a real one: it cannot fit the landmark's phrase
        d = _random_object(rng, lambda d: not landmark.matches(d))
        return replace(d, size=None)

    made_up = _made_up_lists(truth, lambda: [leftover() for _ in rest], rng)
    if made_up is None:
        return None
    said = f"a {correct.words()} is {relation_words(relation)} the {landmark.words()}"
    rationales = [
        f"{said}, and {join_list(['a ' + p.words() for p in ps])} {'is' if len(ps) == 1 else 'are'} not."
        for ps in [truth, *made_up]
    ]
    question = f"what is {relation_words(relation)} the {landmark.words()}?"
    return question, answers, rationales, "relation"


def multiple_choice_item(
    scene: Scene,
    scene_index: int,
    kind: str,
    rng: np.random.Generator,
    balancer: Balancer | None = None,
    max_count: int = 3,
) -> MultipleChoiceItem | None:
    """One item of ``kind`` with shuffled choices, or None when the scene cannot support it.

    ``balancer`` keeps count answers level across items (see ``balance.py``).
    """
    check_kinds(kind, MC_KINDS, "multiple-choice kind")
    if kind == "count":
        made = _count_item(scene, rng, balancer, max_count)
    else:
        made = _relation_item(scene, rng)
    if made is None:
        return None
    question, answers, rationales, detail = made
    answer_order = rng.permutation(_N_CHOICES)  # the right choice starts at 0
    rationale_order = rng.permutation(_N_CHOICES)
    return MultipleChoiceItem(
        question=question,
        answers=tuple(answers[i] for i in answer_order),
        answer_label=int(np.argmin(answer_order)),
        rationales=tuple(rationales[i] for i in rationale_order),
        rationale_label=int(np.argmin(rationale_order)),
        kind=kind,
        scene_index=scene_index,
        detail=detail,
    )


def multiple_choice_items(
    scenes: list[Scene], rng: np.random.Generator, kinds=MC_KINDS, max_count: int | None = None
) -> list[MultipleChoiceItem]:
    """One item per scene, of a random kind the scene supports (others are skipped); count
    answers level over ``zero .. max_count`` (default: the most objects in a scene, at least 3)."""
    kinds = check_kinds(kinds, MC_KINDS, "multiple-choice kind")
    if max_count is None:
        max_count = max([_N_CHOICES - 1] + [len(s) for s in scenes])
    balancer = Balancer()
    out = []
    for index, scene in enumerate(scenes):
        for kind in rng.permutation(list(kinds)):
            item = multiple_choice_item(scene, index, str(kind), rng, balancer, max_count)
            if item is not None:
                out.append(item)
                break
    return out
