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

Items pair scenes from a given pool (by index), and the generator keeps
drawing until true and false statements alternate, so labels are balanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.language import Description, check_kinds, choice, describe
from minivl.data.shapes import COLOURS, SHAPES, Scene

NLVR_KINDS = ("twice", "more", "exactly", "both", "at_least", "and")
_FIELDS = ((), ("shape",), ("colour",), ("colour", "shape"))


@dataclass(frozen=True)
class NLVRItem:
    """A statement about scenes ``left`` and ``right`` (indices into the pool) and its truth."""

    left: int
    right: int
    statement: str
    label: bool
    kind: str


def _simple(kind, scenes, rng) -> tuple[str, bool]:
    """A statement clause (no final period) of a simple kind and its truth value."""
    side = int(rng.integers(2))  # 0: left image, 1: right image
    names = ("left", "right")
    this, other = names[side], names[1 - side]
    d = describe(choice(rng, scenes[side].objects + scenes[1 - side].objects), choice(rng, _FIELDS))
    count = [len(d.select(s)) for s in scenes]
    if kind == "twice":
        text = (
            f"the {this} image has twice as many {d.words(plural_form=True)} as the {other} image"
        )
        return text, count[1 - side] >= 1 and count[side] == 2 * count[1 - side]
    if kind == "more":
        text = f"the {this} image has more {d.words(plural_form=True)} than the {other} image"
        return text, count[side] > count[1 - side]
    if kind == "exactly":
        n = int(rng.integers(1, 4))
        return f"the {this} image has exactly {d.count_words(n)}", count[side] == n
    if kind == "both":
        return f"both images contain a {d.words()}", min(count) >= 1
    # at_least: "at least two circles in the left image are red"
    shape, colour = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLOURS)))
    if rng.random() < 0.7:  # usually about something in the left or right image
        obj = choice(rng, scenes[side].objects)
        shape, colour = obj.shape, obj.colour
    n = int(rng.integers(1, 3))
    noun = Description(shape=shape).count_words(n)
    verb = "is" if n == 1 else "are"
    text = f"at least {noun} in the {this} image {verb} {COLOURS[colour]}"
    return text, len(Description(shape=shape, colour=colour).select(scenes[side])) >= n


def statement(kind: str, scenes: tuple[Scene, Scene], rng: np.random.Generator) -> tuple[str, bool]:
    """A random statement of ``kind`` about (left, right) scenes and whether it is true."""
    check_kinds(kind, NLVR_KINDS, "NLVR statement kind")
    if kind == "and":
        a, a_true = _simple(choice(rng, NLVR_KINDS[:-1]), scenes, rng)
        b, b_true = _simple(choice(rng, NLVR_KINDS[:-1]), scenes, rng)
        return f"{a}, and {b}.", a_true and b_true
    text, truth = _simple(kind, scenes, rng)
    return text + ".", truth


def nlvr_items(
    scenes: list[Scene], n: int, rng: np.random.Generator, kinds=NLVR_KINDS, tries: int = 200
) -> list[NLVRItem]:
    """``n`` items over pairs of distinct pool scenes; labels alternate true / false."""
    if len(scenes) < 2:
        raise ValueError(f"NLVR needs a pool of at least 2 scenes, got {len(scenes)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    kinds = check_kinds(kinds, NLVR_KINDS, "NLVR statement kind")
    items = []
    for k in range(n):
        wanted = k % 2 == 0
        for _ in range(tries):  # keep the last draw if the wanted label never comes
            left, right = (int(i) for i in rng.choice(len(scenes), 2, replace=False))
            kind = choice(rng, kinds)
            text, label = statement(kind, (scenes[left], scenes[right]), rng)
            if label == wanted:
                break
        items.append(NLVRItem(left, right, text, label, kind))
    return items
