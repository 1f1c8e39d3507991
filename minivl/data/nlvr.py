"""NLVR: a statement about a pair of images, true or false (lecture S02).

The lecture's example, "the left image has twice as many cats as the right
image, and at least two cats are black", becomes, in the shapes world,
"the left image has twice as many circles as the right image, and at least
two circles in the left image are red." Statement kinds:

========= =============================================================
twice     the left image has twice as many circles as the right image.
more      the right image has more red shapes than the left image.
exactly   the left image has exactly two blue squares.
both      both images contain a yellow ring.
at_least  at least two circles in the left image are red.
and       two of the above joined by ", and" (true when both are)
========= =============================================================

Items pair scenes from a given pool (by index). Only the images decide, because
everything the wording shows is drawn before the scenes are looked at:

1. the kind (uniformly), then the label (true and false kept level within
   each kind);
2. the clause's group: what its wording gives away besides the colour and
   shape words (which attributes are named, the number); an "and" statement
   that is true joins two true clauses, a false one (true, false),
   (false, true) or (false, false), a third of the time each;
3. then pairs of scenes are drawn until one has a clause of that group with
   the wanted truth, and such a clause is drawn uniformly (so the colour and
   shape words are uniform too, not taken from the objects present).

The items are shuffled at the end: their order says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.balance import Balancer
from minivl.data.language import Description, check_kinds, choice
from minivl.data.shapes import COLOURS, Scene
from minivl.data.vqa import every_description

NLVR_KINDS = ("twice", "more", "exactly", "both", "at_least", "and")
_FIELDS = ((), ("shape",), ("colour",), ("colour", "shape"))
_SIDES = ("left", "right")
# Per simple kind, its groups: (fields named, number). "both images contain a shape" is left
# out (never false), and so is "exactly three" of anything narrower than "shapes" (too rare).
GROUPS = {
    "twice": tuple((f, None) for f in _FIELDS),
    "more": tuple((f, None) for f in _FIELDS),
    "exactly": tuple((f, n) for f in _FIELDS for n in (1, 2)) + (((), 3),),
    "both": tuple((f, None) for f in _FIELDS[1:]),
    "at_least": ((("colour", "shape"), 1), (("colour", "shape"), 2)),
}


@dataclass(frozen=True)
class NLVRItem:
    """A statement about scenes ``left`` and ``right`` (indices into the pool) and its truth."""

    left: int
    right: int
    statement: str
    label: bool
    kind: str


def counts(scene: Scene) -> dict[Description, int]:
    """How many of the scene's objects each phrase of every group fits."""
    return {d: len(d.select(scene)) for fields in _FIELDS for d in every_description(fields)}


def clauses(kind: str, group, scenes: tuple[Scene, Scene], truth: bool, tallies=None) -> list[str]:
    """Every clause (no final period) of a simple ``kind`` and ``group`` with this truth value.

    ``tallies``: the two scenes' ``counts``, if already known.
    """
    fields, n = group
    tallies = tallies or [counts(s) for s in scenes]
    out = []
    for d in every_description(fields):
        count = [t[d] for t in tallies]
        if kind == "both":
            if (min(count) >= 1) == truth:
                out.append(f"both images contain a {d.words()}")
            continue
        for side, this in enumerate(_SIDES):
            mine, theirs, other = count[side], count[1 - side], _SIDES[1 - side]
            if kind == "twice":
                if (theirs >= 1 and mine == 2 * theirs) == truth:
                    out.append(
                        f"the {this} image has twice as many {d.words(plural_form=True)} "
                        f"as the {other} image"
                    )
            elif kind == "more":
                if (mine > theirs) == truth:
                    out.append(
                        f"the {this} image has more {d.words(plural_form=True)} than the {other} image"
                    )
            elif kind == "exactly":
                if (mine == n) == truth:
                    out.append(f"the {this} image has exactly {d.count_words(n)}")
            elif (mine >= n) == truth:  # at_least: "at least two circles in the left image are red"
                noun = Description(shape=d.shape).count_words(n)
                verb = "is" if n == 1 else "are"
                out.append(f"at least {noun} in the {this} image {verb} {COLOURS[d.colour]}")
    return out


def _plan(kind: str, truth: bool, rng) -> list[tuple[str, tuple, bool]]:
    """The (kind, group, truth) of each clause, drawn before any scene is seen."""
    if kind == "and":
        parts = (True, True) if truth else choice(rng, ((True, False), (False, True), (False, False)))
        kinds = [choice(rng, NLVR_KINDS[:-1]) for _ in parts]
    else:
        parts, kinds = (truth,), [kind]
    return [(k, choice(rng, GROUPS[k]), t) for k, t in zip(kinds, parts)]


def _realise(plan, scenes, rng, tallies=None) -> str | None:
    texts = []
    for kind, group, truth in plan:
        found = clauses(kind, group, scenes, truth, tallies)
        if not found:
            return None
        texts.append(choice(rng, found))
    return ", and ".join(texts) + "."


def statement(
    kind: str, scenes: tuple[Scene, Scene], rng: np.random.Generator, truth: bool | None = None
) -> tuple[str, bool] | None:
    """A statement of ``kind`` about (left, right) scenes and its truth value (drawn uniformly
    unless given), or None when this pair has no statement of the drawn group and truth."""
    check_kinds(kind, NLVR_KINDS, "NLVR statement kind")
    truth = bool(rng.integers(2)) if truth is None else truth
    text = _realise(_plan(kind, truth, rng), scenes, rng)
    return None if text is None else (text, truth)


def nlvr_items(
    scenes: list[Scene], n: int, rng: np.random.Generator, kinds=NLVR_KINDS, tries: int = 3000
) -> list[NLVRItem]:
    """``n`` items over pairs of distinct pool scenes, true and false level within each kind,
    in a random order (an item whose plan no pair fits in ``tries`` draws is left out)."""
    if len(scenes) < 2:
        raise ValueError(f"NLVR needs a pool of at least 2 scenes, got {len(scenes)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    kinds = check_kinds(kinds, NLVR_KINDS, "NLVR statement kind")
    labels = Balancer()
    tallies = [counts(s) for s in scenes]
    items = []
    for _ in range(n):
        kind = choice(rng, kinds)
        truth = choice(rng, [t for t in (True, False) if labels.allows(kind, t, (True, False))])
        plan = _plan(kind, truth, rng)
        for _ in range(tries):
            left, right = rng.integers(len(scenes), size=2).tolist()
            if left == right:
                continue
            text = _realise(plan, (scenes[left], scenes[right]), rng, (tallies[left], tallies[right]))
            if text is not None:
                labels.add(kind, truth)
                items.append(NLVRItem(left, right, text, truth, kind))
                break
    return [items[i] for i in rng.permutation(len(items))]
