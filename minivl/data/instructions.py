"""Visual instruction data for LLaVA, written by a rule-based teacher (lecture S30-S33).

LLaVA asked GPT-4 to write instruction-following data from a symbolic view of
each image (its captions and boxes). Our teacher reads the same kind of view,
the scene's ground truth, and writes the three response types of
LLaVA-Instruct-158K:

- ``"conversation"``: a few questions about the image, answered in sentences;
- ``"detail"``: "Describe the image in detail." and a paragraph naming every
  object, where it is, and how two of them relate;
- ``"reasoning"``: a question that needs a step of reasoning over the
  objects (what is left if one is removed, which colour is most common,
  which shape is nearest an edge, are all colours the same), answered with
  the reason.

Turns are ``(instruction, response)`` pairs; the model's prompt builder adds
the ``<image>`` placeholder and the ``USER:`` / ``ASSISTANT:`` template.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from minivl.data.language import (
    NUMBER_WORDS,
    Description,
    check_kinds,
    choice,
    describe,
    join_list,
    relation_words,
    unique_descriptions,
)
from minivl.data.shapes import COLOURS, RELATIONS, Scene, relation_holds
from minivl.data.vqa import QUESTION_TYPES, Question, ask

INSTRUCTION_KINDS = ("conversation", "detail", "reasoning")
DETAIL_PROMPTS = (
    "Describe the image in detail.",
    "What is in this picture? Give a detailed description.",
    "Write a detailed description of the image.",
)
_FULL = ("size", "colour", "shape")


@dataclass(frozen=True)
class Instruction:
    kind: str
    turns: tuple[tuple[str, str], ...]  # (instruction, response) pairs
    scene_index: int


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _a(obj) -> str:
    return "a " + describe(obj, _FULL).words()


def _where(obj, image_size: int) -> str:
    """Where the object's centre lies on a 3x3 grid: "in the top left", "on the left", ..."""
    x, y = obj.centre
    col = ("left", "", "right")[min(int(3 * x / image_size), 2)]
    row = ("top", "", "bottom")[min(int(3 * y / image_size), 2)]
    if row and col:
        return f"in the {row} {col}"
    if col:
        return f"on the {col}"
    return f"at the {row}" if row else "in the centre"


def _answer_sentence(q: Question) -> str:
    """The teacher's full-sentence answer to a VQA question."""
    if q.qtype == "count":
        n = NUMBER_WORDS.index(q.answer)
        verb = "is" if n == 1 else "are"
        return _sentence(f"there {verb} {q.subject.count_words(n)} in the image.")
    if q.qtype == "colour":
        return _sentence(f"the {q.subject.words()} is {q.answer}.")
    if q.qtype == "shape":
        return _sentence(f"the {q.subject.words(noun='object')} is a {q.answer}.")
    if q.qtype == "size":
        return _sentence(f"the {q.subject.words(noun='object')} is {q.answer}.")
    if q.qtype == "exist":
        if q.answer == "yes":
            return f"Yes, there is at least one {q.subject.words()} in the image."
        return f"No, there is no {q.subject.words()} in the image."
    a, rel, b = q.subject.words(), relation_words(q.relation), q.other.words()
    return (
        f"Yes, the {a} is {rel} the {b}."
        if q.answer == "yes"
        else f"No, the {a} is not {rel} the {b}."
    )


def _conversation(scene, rng, n_questions=3):
    turns = []
    for qtype in rng.permutation(list(QUESTION_TYPES))[:n_questions]:
        q = ask(scene, str(qtype), rng)
        if q is not None:
            turns.append((_sentence(q.text), _answer_sentence(q)))
    return turns


def _detail(scene, rng):
    objects = sorted(scene.objects, key=lambda o: o.centre)  # left to right
    k = len(objects)
    shapes = "one shape" if k == 1 else f"{NUMBER_WORDS[k]} shapes"
    parts = [f"The image shows {shapes} on a black background."]
    parts += [_sentence(f"{_a(o)} is {_where(o, scene.image_size)} of the image.") for o in objects]
    related = [
        (a, r, b)
        for i in range(k)
        for j in range(k)
        if i != j
        for a in unique_descriptions(scene, i)[:1]
        for b in unique_descriptions(scene, j)[:1]
        for r in RELATIONS[:4]
        if relation_holds(r, scene.objects[i], scene.objects[j])
    ]
    if related:
        a, r, b = choice(rng, related)
        parts.append(f"The {a.words()} is {relation_words(r)} the {b.words()}.")
    return [(choice(rng, DETAIL_PROMPTS), " ".join(parts))]


def _removal(scene, rng):
    named = [(i, d) for i in range(len(scene)) for d in unique_descriptions(scene, i)[:1]]
    if not named:
        return None
    i, d = choice(rng, named)
    rest = [o for j, o in enumerate(scene.objects) if j != i]
    question = f"If the {d.words()} were taken away, how many shapes would be left?"
    left = Description().count_words(len(rest))
    if rest:
        answer = f"Removing the {d.words()} leaves {left}: {join_list([_a(o) for o in rest])}."
    else:
        answer = (
            f"Removing the {d.words()} leaves {left}, because it is the only shape in the image."
        )
    return question, answer


def _most_common_colour(scene, rng):
    counts = Counter(o.colour for o in scene.objects).most_common()
    if len(scene) < 2 or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None  # no single most common colour
    colour, n = counts[0]
    which = [_a(o) for o in scene.objects if o.colour == colour]
    question = "Which colour appears most often in the image, and on how many shapes?"
    answer = (
        f"{_sentence(COLOURS[colour])} appears most often: {NUMBER_WORDS[n]} of the "
        f"{NUMBER_WORDS[len(scene)]} shapes are {COLOURS[colour]} ({join_list(which)})."
    )
    return question, answer


def _nearest_edge(scene, rng):
    edge = choice(rng, ("left", "right", "top", "bottom"))
    distance = {
        "left": lambda o: o.box[0], "right": lambda o: scene.image_size - o.box[2],
        "top": lambda o: o.box[1], "bottom": lambda o: scene.image_size - o.box[3],
    }[edge]  # fmt: skip
    ranked = sorted(scene.objects, key=distance)
    if len(ranked) > 1 and distance(ranked[0]) == distance(ranked[1]):
        return None
    nearest = ranked[0]
    question = f"Which shape is closest to the {edge} edge of the image, and what colour is it?"
    answer = (
        f"The shape closest to the {edge} edge is {_a(nearest)}, so its colour is "
        f"{COLOURS[nearest.colour]}."
    )
    return question, answer


def _same_colour(scene, rng):
    if len(scene) < 2:
        return None
    colours = sorted({o.colour for o in scene.objects})
    question = "Do all the shapes in the image have the same colour?"
    if len(colours) == 1:
        answer = f"Yes, all {NUMBER_WORDS[len(scene)]} shapes are {COLOURS[colours[0]]}."
    else:
        answer = (
            f"No. The image shows {join_list([_a(o) for o in scene.objects])}: "
            f"{NUMBER_WORDS[len(colours)]} different colours."
        )
    return question, answer


REASONING = {
    "removal": _removal,
    "most_common_colour": _most_common_colour,
    "nearest_edge": _nearest_edge,
    "same_colour": _same_colour,
}


def _reasoning(scene, rng):
    for name in rng.permutation(sorted(REASONING)):
        made = REASONING[str(name)](scene, rng)
        if made is not None:
            return [made]
    return []


def make_instruction(
    scene: Scene, scene_index: int, kind: str, rng: np.random.Generator
) -> Instruction | None:
    """One instruction sample of ``kind`` (None when the scene supports none)."""
    check_kinds(kind, INSTRUCTION_KINDS, "instruction kind")
    build = {"conversation": _conversation, "detail": _detail, "reasoning": _reasoning}[kind]
    turns = build(scene, rng)
    return Instruction(kind, tuple(turns), scene_index) if turns else None


def instruction_items(
    scenes: list[Scene], rng: np.random.Generator, kinds=INSTRUCTION_KINDS
) -> list[Instruction]:
    """One sample per scene, of a kind drawn uniformly from ``kinds``."""
    kinds = check_kinds(kinds, INSTRUCTION_KINDS, "instruction kind")
    out = []
    for index, scene in enumerate(scenes):
        item = make_instruction(scene, index, choice(rng, kinds), rng)
        if item is not None:
            out.append(item)
    return out
