"""Visual dialog: several question-answer turns about one image, with coreference.

As in the lecture's example (S02: "Can you see its face? [it = cat]"), the
dialog opens with a caption, questions name objects, and later questions
refer back to one of them with "it":

    caption: one circle and two squares.
    Q: is there anything to the left of the small square?  A: yes  (the circle is)
    Q: what colour is it?                  A: red     (it = the circle, not the square)
    Q: is it above the large square?       A: no      (it = still the circle)
    Q: what size is the circle?            A: small
    Q: is it green?                        A: no      (it = the circle)

The rule for "it": it is the object the previous turn was about (``referent``):

- the object a question names ("what colour is the small square?");
- the one object standing in the relation, when "is there anything to the
  left of the X?" is answered "yes": only the image tells which one it is;
- after "is it above the X?" it stays what it was: the object named last (X)
  is not "it".

A "no" to "is there anything ..." leaves nothing to refer to
(``referent = -1``) and the next question names an object. So neither
"the last object mentioned" nor any other rule over the words alone finds
the referent, and each turn records it: the ground truth for coreference.

Only the image decides the answers. The caption tells the shapes and how many
of each (a count caption), so no question asks a shape; no question asks what
the caption or an earlier turn already tells (an object's colour or size
asked once, or named in a phrase, is not asked again, nor is the size of
the other circles once "the small circle" has singled one out; and a dialog asks
about one relation at most, since where things are is correlated: "is it
left of X?" would partly answer "is it above X?" or "is there anything
right of it?"); and every question is
drawn answer-first (``balance.py``), yes/no level within each group (question
form, attributes named, relation word, number of objects in the caption) and
colours and sizes uniform.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from minivl.data.balance import Balancer, Candidate, pick
from minivl.data.captions import sample_caption
from minivl.data.language import (
    UNIQUE_FIELDS,
    relation_words,
    size_word,
    unique_descriptions,
)
from minivl.data.shapes import COLOURS, RELATIONS, SIZES, Scene, relation_holds

_ANSWERS = {"colour": COLOURS, "size": SIZES, "yes/no": ("yes", "no")}


@dataclass(frozen=True)
class DialogTurn:
    question: str
    answer: str
    referent: int  # index of the object the question is about; -1 when none


@dataclass(frozen=True)
class Dialog:
    caption: str
    turns: tuple[DialogTurn, ...]
    scene_index: int


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _shown(d) -> tuple:
    """What a phrase gives away beyond its colour and shape words."""
    return (d.colour is not None, d.size)


def _told(scene, j: int, d) -> dict[int, set[str]]:
    """What the phrase ``d``, fitting object ``j`` alone, tells about which objects.

    It names ``j``'s colour and size if it says them; and because it fits
    ``j`` alone, it tells that every object it would fit but for one named
    attribute lacks that attribute ("the small circle": every other circle
    is large), so that attribute counts as told for them too.
    """
    told = {j: {f for f in ("colour", "size") if getattr(d, f) is not None}}
    for f in told[j]:
        for x in replace(d, **{f: None}).select(scene):
            if x != j:
                told.setdefault(x, set()).add(f)
    return told


def _merge(*parts: dict[int, set[str]]) -> dict[int, set[str]]:
    out = {}
    for part in parts:
        for i, fields in part.items():
            out.setdefault(i, set()).update(fields)
    return out


def _turn(question: str, referent: int, told: dict[int, set[str]], key) -> tuple:
    """A question's payload: its text, its referent, what it tells about which object (its
    phrases and its answer), and the fact it asks about (never asked twice): an
    ``(object, "colour" | "size")`` pair or a relation triple."""
    return (question, referent, told, key)


class _Options(dict):
    """Questions one turn could ask, by answer type (``_ANSWERS``)."""

    def __init__(self):
        super().__init__({kind: [] for kind in _ANSWERS})

    def add(self, kind, group, answer, question, referent, told, key):
        self[kind].append(Candidate(group, answer, _turn(question, referent, told, key)))


def _named(scene, known, v) -> _Options:
    """Questions that name an object."""
    k, out = len(scene), _Options()
    for i, obj in enumerate(scene.objects):
        if "colour" not in known[i]:
            for d in unique_descriptions(scene, i, (("shape",), ("size", "shape"))):
                out.add("colour", ("colour", k, _shown(d)), COLOURS[obj.colour],
                        f"what colour is the {d.words(variant=v)}?", i,
                        _merge({i: {"colour"}}, _told(scene, i, d)), (i, "colour"))  # fmt: skip
        if "size" not in known[i]:
            for d in unique_descriptions(scene, i, (("shape",), ("colour", "shape"))):
                out.add("size", ("size", k, _shown(d)), SIZES[obj.size],
                        f"what size is the {d.words(variant=v)}?", i,
                        _merge({i: {"size"}}, _told(scene, i, d)), (i, "size"))  # fmt: skip
    for j in range(k):
        for d in unique_descriptions(scene, j, UNIQUE_FIELDS):
            for relation in RELATIONS:
                if relation in ("bigger", "smaller") and d.size is not None:
                    continue
                fitting = [
                    i for i in range(k)
                    if i != j and relation_holds(relation, scene.objects[i], scene.objects[j])
                ]  # fmt: skip
                if len(fitting) > 1:
                    continue
                out.add("yes/no", ("anything", k, relation, _shown(d)), _yes(bool(fitting)),
                        f"is there anything {relation_words(relation, v)} the {d.words(variant=v)}?",
                        fitting[0] if fitting else -1, _told(scene, j, d), ("anything", j, relation))  # fmt: skip
    return out


def _about_it(scene, i, known, v) -> _Options:
    """Questions about object ``i`` that call it "it" and ask what is not yet known."""
    k, obj, out = len(scene), scene.objects[i], _Options()
    if "colour" not in known[i]:
        told, key = {i: {"colour"}}, (i, "colour")
        out.add("colour", ("it colour", k), COLOURS[obj.colour], "what colour is it?", i, told, key)
        for c, name in enumerate(COLOURS):
            out.add("yes/no", ("it colour?", k), _yes(c == obj.colour), f"is it {name}?", i, told, key)
    if "size" not in known[i]:
        told, key = {i: {"size"}}, (i, "size")
        out.add("size", ("it size", k), SIZES[obj.size], "what size is it?", i, told, key)
        for s in range(len(SIZES)):
            out.add("yes/no", ("it size?", k), _yes(s == obj.size),
                    f"is it {size_word(s, v)}?", i, told, key)  # fmt: skip
    for j in range(k):
        if j == i:
            continue
        for d in unique_descriptions(scene, j, UNIQUE_FIELDS):
            for relation in RELATIONS:
                sizes_known = "size" in known[i] or "size" in known[j] or d.size is not None
                if relation in ("bigger", "smaller") and sizes_known:
                    continue
                out.add("yes/no", ("it relation", k, relation, _shown(d)),
                        _yes(relation_holds(relation, obj, scene.objects[j])),
                        f"is it {relation_words(relation, v)} the {d.words(variant=v)}?", i,
                        _told(scene, j, d), (i, relation, j))  # fmt: skip
    return out


def _ask(options: _Options, asked, rng, balancer) -> Candidate | None:
    """An answer-first pick from one answer type (a random one that still has a question)."""
    for kind in rng.permutation(list(_ANSWERS)).tolist():
        fresh = [
            c for c in options[kind]
            if c.payload[3] not in asked and not (len(c.payload[3]) == 3 and "relation" in asked)
        ]  # fmt: skip
        picked = pick(fresh, _ANSWERS[kind], rng, balancer)
        if picked is not None:
            return picked
    return None


def make_dialog(
    scene: Scene,
    scene_index: int,
    rng: np.random.Generator,
    n_turns: int = 5,
    balancer: Balancer | None = None,
    p_it: float = 0.6,
) -> Dialog | None:
    """A caption and ``n_turns`` distinct turns (fewer if the scene runs out of questions).

    A turn calls the previous turn's object "it" with probability ``p_it``
    (when there is one, and something is left to ask about it). None when
    no question can be asked at all.
    """
    if n_turns < 1:
        raise ValueError(f"n_turns must be positive, got {n_turns}")
    if not 0 <= p_it <= 1:
        raise ValueError(f"p_it must be a probability, got {p_it}")
    v = int(rng.integers(2))
    caption = sample_caption(scene, rng, kinds=("count",)).text
    known = {i: set() for i in range(len(scene))}  # what the dialog has told about each object
    turns, asked, focus = [], set(), -1
    for _ in range(4 * n_turns):  # bounded: a small scene runs out of new questions
        if len(turns) == n_turns:
            break
        kind = "it" if focus >= 0 and rng.random() < p_it else "named"
        options = _about_it(scene, focus, known, v) if kind == "it" else _named(scene, known, v)
        picked = _ask(options, asked, rng, balancer)
        if picked is None:
            if kind == "named":
                break
            focus = -1  # nothing left to ask about it: name something next
            continue
        question, referent, told, key = picked.payload
        turns.append(DialogTurn(question, picked.answer, referent))
        asked.add(key)
        if len(key) == 3:  # a relation: the only one of the dialog
            asked.add("relation")
        for i, fields in told.items():
            known[i] |= fields
        focus = referent
    if not turns:
        return None
    return Dialog(caption, tuple(turns), scene_index)


def dialog_items(scenes: list[Scene], rng: np.random.Generator, n_turns: int = 5) -> list[Dialog]:
    """One dialog per scene (scenes with nothing to ask are skipped); answers balanced across
    all of them."""
    balancer = Balancer()
    out = [make_dialog(scene, i, rng, n_turns, balancer) for i, scene in enumerate(scenes)]
    return [d for d in out if d is not None]
