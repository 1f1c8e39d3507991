"""Visual dialog: several question-answer turns about one image, with coreference.

As in the lecture's example (S02: "Can you see its face? [it = cat]"), a
question introduces an object by a phrase that fits it alone, and the next
questions refer back to it with "it":

    caption: a small red circle and a blue square.
    Q: is there a red circle?                  A: yes     (introduces the circle)
    Q: is it small?                            A: yes     (it = the red circle)
    Q: is it to the left of the blue square?   A: no
    Q: what colour is the square?              A: blue    (introduces the square)
    Q: what size is it?                        A: large

Each turn records ``referent``, the index of the object the question is
about: the ground truth for the coreference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.captions import sample_caption
from minivl.data.language import (
    NUMBER_WORDS,
    UNIQUE_FIELDS,
    choice,
    relation_words,
    size_word,
    unique_descriptions,
)
from minivl.data.shapes import COLOURS, RELATIONS, SIZES, Scene, relation_holds


@dataclass(frozen=True)
class DialogTurn:
    question: str
    answer: str
    referent: int  # index of the object the question is about


@dataclass(frozen=True)
class Dialog:
    caption: str
    turns: tuple[DialogTurn, ...]
    scene_index: int


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _introduce(scene, i, d, rng, v) -> DialogTurn:
    """A question that names object ``i`` by the unique phrase ``d``."""
    obj = scene.objects[i]
    options = [
        (f"is there a {d.words(variant=v)}?", "yes"),
        (f"how many {d.words(plural_form=True, variant=v)} are there?", NUMBER_WORDS[1]),
    ]
    if d.colour is None:
        options.append((f"what colour is the {d.words(variant=v)}?", COLOURS[obj.colour]))
    if d.size is None:
        options.append((f"what size is the {d.words(variant=v)}?", SIZES[obj.size]))
    question, answer = choice(rng, options)
    return DialogTurn(question, answer, i)


def _follow_up(scene, i, landmarks, rng, v) -> DialogTurn:
    """A question about object ``i`` that calls it "it"."""
    obj = scene.objects[i]
    colour = obj.colour if rng.random() < 0.5 else int(rng.integers(len(COLOURS)))
    size = int(rng.integers(len(SIZES)))
    options = [
        (f"is it {COLOURS[colour]}?", _yes(colour == obj.colour)),
        ("what colour is it?", COLOURS[obj.colour]),
        (f"is it {size_word(size, v)}?", _yes(size == obj.size)),
        ("what size is it?", SIZES[obj.size]),
    ]
    others = [(j, d) for j, d in landmarks if j != i]
    if others:
        j, d = choice(rng, others)
        relation = choice(rng, RELATIONS)
        options.append(
            (
                f"is it {relation_words(relation, v)} the {d.words(variant=v)}?",
                _yes(relation_holds(relation, obj, scene.objects[j])),
            )
        )
    question, answer = choice(rng, options)
    return DialogTurn(question, answer, i)


def make_dialog(
    scene: Scene, scene_index: int, rng: np.random.Generator, n_turns: int = 5
) -> Dialog | None:
    """A caption and ``n_turns`` distinct turns (fewer if the scene runs out of questions).

    None when no object can be named uniquely.
    """
    if n_turns < 1:
        raise ValueError(f"n_turns must be positive, got {n_turns}")
    named = [
        (i, d) for i in range(len(scene)) for d in unique_descriptions(scene, i, UNIQUE_FIELDS)
    ]
    if not named:
        return None
    v = int(rng.integers(2))
    turns, focus = [], None
    for _ in range(20 * n_turns):  # bounded: a one-object scene runs out of new questions
        if len(turns) == n_turns:
            break
        if focus is None or rng.random() < 0.3:  # move on to a (possibly new) object
            i, d = choice(rng, named)
            turn = _introduce(scene, i, d, rng, v)
        else:
            turn = _follow_up(scene, focus, named, rng, v)
        if turn.question in (t.question for t in turns):  # already asked: ask another
            continue
        turns.append(turn)
        focus = turn.referent
    return Dialog(sample_caption(scene, rng).text, tuple(turns), scene_index)


def dialog_items(scenes: list[Scene], rng: np.random.Generator, n_turns: int = 5) -> list[Dialog]:
    """One dialog per scene (scenes where nothing can be named alone are skipped)."""
    out = [make_dialog(scene, i, rng, n_turns) for i, scene in enumerate(scenes)]
    return [d for d in out if d is not None]
