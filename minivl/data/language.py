"""Words about the shapes world: noun phrases, plurals, numbers, relations.

Every text task (captions, VQA, referring expressions, FOIL, NLVR, dialog,
multiple choice, instructions) builds its sentences from these pieces, so a
phrase such as "the small red circle" means the same thing everywhere:
``Description(shape=circle, colour=red, size=small)``, i.e. every object whose
named attributes match (the ones left out are free).

Synonyms give the paraphrases: a size or relation is written with word
``variant`` of its list ("small"/"little", "to the left of"/"left of").
Swapping a value while keeping the variant changes exactly one word, which
FOIL relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from minivl.data.shapes import COLOURS, SHAPES, Scene, ShapeObject

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZE_WORDS = (("small", "little"), ("large", "big"))  # per size index, its synonyms
RELATION_WORDS = {
    "left": ("to the left of", "left of"),
    "right": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
    "bigger": ("bigger than", "larger than"),
    "smaller": ("smaller than",),
}
OPPOSITE = {
    "left": "right", "right": "left", "above": "below",
    "below": "above", "bigger": "smaller", "smaller": "bigger",
}  # fmt: skip

# Attribute sets tried, in order, when a phrase must pick out one object.
UNIQUE_FIELDS = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"))


def plural(noun: str) -> str:
    """``"circle" -> "circles"``, ``"cross" -> "crosses"``."""
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def size_word(size: int, variant: int = 0) -> str:
    words = SIZE_WORDS[size]
    return words[variant % len(words)]


def relation_words(relation: str, variant: int = 0) -> str:
    words = RELATION_WORDS[relation]
    return words[variant % len(words)]


def join_list(items: list[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    if len(items) == 0:
        raise ValueError("join_list needs at least one item")
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def split_words(text: str) -> list[str]:
    """Words and punctuation marks, the unit that FOIL positions count in."""
    return re.findall(r"\w+|[^\w\s]", text)


def check_kinds(kinds, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``kinds`` as a tuple; a ValueError if it is empty or names something not in ``allowed``."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds:
        raise ValueError(f"no {what} given; expected some of {allowed}")
    for kind in kinds:
        if kind not in allowed:
            raise ValueError(f"unknown {what} {kind!r}; expected one of {allowed}")
    return kinds


def choice(rng: np.random.Generator, options):
    """One element of a sequence (``rng.choice`` would turn tuples into arrays)."""
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class Description:
    """What a noun phrase says about an object; an attribute left as None is free."""

    shape: int | None = None
    colour: int | None = None
    size: int | None = None

    def matches(self, obj: ShapeObject) -> bool:
        return (
            (self.shape is None or obj.shape == self.shape)
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
        )

    def select(self, scene: Scene) -> list[int]:
        """Indices of the scene's objects this phrase fits."""
        return [i for i, obj in enumerate(scene.objects) if self.matches(obj)]

    def words(self, plural_form: bool = False, variant: int = 0, noun: str = "shape") -> str:
        """E.g. ``"small red circle"``; without a shape the noun is ``noun``."""
        head = SHAPES[self.shape] if self.shape is not None else noun
        parts = [
            size_word(self.size, variant) if self.size is not None else None,
            COLOURS[self.colour] if self.colour is not None else None,
            plural(head) if plural_form else head,
        ]
        return " ".join(p for p in parts if p is not None)

    def count_words(self, n: int, variant: int = 0, noun: str = "shape") -> str:
        """``"two red circles"``, ``"one red circle"``, ``"no red circles"``."""
        number = "no" if n == 0 else NUMBER_WORDS[n]
        return f"{number} {self.words(plural_form=n != 1, variant=variant, noun=noun)}"


def describe(obj: ShapeObject, fields) -> Description:
    """The Description of ``obj`` naming only ``fields`` (e.g. ``("colour", "shape")``)."""
    return Description(**{f: getattr(obj, f) for f in fields})


def with_field(description: Description, field: str, value: int) -> Description:
    return replace(description, **{field: value})


def unique_descriptions(scene: Scene, index: int, field_sets=UNIQUE_FIELDS) -> list[Description]:
    """Descriptions of object ``index`` (one per field set) that fit no other object."""
    out = []
    for fields in field_sets:
        d = describe(scene.objects[index], fields)
        if d.select(scene) == [index]:
            out.append(d)
    return out
