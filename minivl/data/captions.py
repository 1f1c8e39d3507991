"""Captions of shapes-world scenes: the stand-in for Conceptual Captions / COCO.

A caption is kept as a small structure (``Caption``) and written out by
``Caption.text``, so that it can be checked against a scene (``holds``) and
changed one word at a time (FOIL, retrieval hard negatives). Three kinds:

- ``"list"``: every object, in random order: "a small red circle and a blue square."
- ``"relation"``: two objects and a true relation between them:
  "a red circle is to the left of a blue square."
- ``"count"``: how many of each shape: "two circles and one square."

Each kind has several templates, sizes are named or not, and sizes and
relations have synonyms, so the same scene gets many paraphrases.
CLIP's prompts ("a photo of a {}.") for the 36 classes are here too (S16).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from minivl.data.language import (
    Description,
    check_kinds,
    choice,
    describe,
    join_list,
    relation_words,
)
from minivl.data.shapes import CLASS_NAMES, RELATIONS, Scene, relation_holds

CAPTION_KINDS = ("list", "relation", "count")
TEMPLATES = {
    "list": (
        "{}.",
        "an image of {}.",
        "a picture showing {}.",
        "{} on a black background.",
        "the image shows {}.",
    ),  # fmt: skip
    "relation": ("{a} {rel} {b}.", "{a} is {rel} {b}.", "there is {a} {rel} {b}."),
    "count": ("{}.", "{} in the image.", "the image shows {}."),
}
CLIP_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a {} on a black background.",
)


@dataclass(frozen=True)
class Caption:
    """A caption before it is written out.

    ``phrases`` are one Description per listed object ("list"), the two
    related objects ("relation"), or one shape each ("count", with
    ``counts``). ``template`` and ``variant`` pick the wording.
    """

    kind: str
    phrases: tuple[Description, ...]
    relation: str | None = None
    counts: tuple[int, ...] = ()
    template: int = 0
    variant: int = 0

    @property
    def text(self) -> str:
        template = TEMPLATES[self.kind][self.template]
        v = self.variant
        if self.kind == "list":
            return template.format(join_list(["a " + p.words(variant=v) for p in self.phrases]))
        if self.kind == "relation":
            a, b = ("a " + p.words(variant=v) for p in self.phrases)
            return template.format(a=a, rel=relation_words(self.relation, v), b=b)
        return template.format(
            join_list([p.count_words(n, v) for p, n in zip(self.phrases, self.counts)])
        )


def holds(caption: Caption, scene: Scene) -> bool:
    """Whether the caption is true of the scene.

    "list": the phrases fit distinct objects; "relation": some pair of objects
    fitting the two phrases stands in the relation; "count": each phrase fits
    exactly its count of objects.
    """
    objects = scene.objects
    if caption.kind == "list":
        return _fit_distinct(caption.phrases, objects, frozenset())
    if caption.kind == "relation":
        a, b = caption.phrases
        return any(
            relation_holds(caption.relation, x, y)
            for x in objects if a.matches(x)
            for y in objects if y is not x and b.matches(y)
        )  # fmt: skip
    return all(len(p.select(scene)) == n for p, n in zip(caption.phrases, caption.counts))


def _fit_distinct(phrases, objects, used) -> bool:
    """Can each phrase be given its own object (none in ``used``) that it fits? (Backtracking.)"""
    if not phrases:
        return True
    first, rest = phrases[0], phrases[1:]
    return any(
        _fit_distinct(rest, objects, used | {i})
        for i, obj in enumerate(objects)
        if i not in used and first.matches(obj)
    )


def _phrase(obj, rng) -> Description:
    """Colour and shape always; the size half of the time."""
    fields = ("size", "colour", "shape") if rng.random() < 0.5 else ("colour", "shape")
    return describe(obj, fields)


def _true_relations(scene: Scene) -> list[tuple[int, int, str]]:
    return [
        (i, j, r)
        for i, a in enumerate(scene.objects)
        for j, b in enumerate(scene.objects)
        if i != j
        for r in RELATIONS
        if relation_holds(r, a, b)
    ]


def sample_caption(scene: Scene, rng: np.random.Generator, kinds=CAPTION_KINDS) -> Caption:
    """A random true caption of one of ``kinds`` (a list caption when no kind fits)."""
    kinds = check_kinds(kinds, CAPTION_KINDS, "caption kind")
    relations = _true_relations(scene)
    feasible = [k for k in kinds if k != "relation" or relations] or ["list"]
    kind = choice(rng, feasible)
    template = int(rng.integers(len(TEMPLATES[kind])))
    variant = int(rng.integers(2))
    if kind == "list":
        order = rng.permutation(len(scene))
        phrases = tuple(_phrase(scene.objects[i], rng) for i in order)
        return Caption("list", phrases, template=template, variant=variant)
    if kind == "relation":
        i, j, relation = choice(rng, relations)
        phrases = (_phrase(scene.objects[i], rng), _phrase(scene.objects[j], rng))
        return Caption("relation", phrases, relation, template=template, variant=variant)
    counts = Counter(obj.shape for obj in scene.objects)
    shapes = [int(s) for s in rng.permutation(sorted(counts))]
    phrases = tuple(Description(shape=s) for s in shapes)
    return Caption(
        "count",
        phrases,
        counts=tuple(counts[s] for s in shapes),
        template=template,
        variant=variant,
    )


def sample_captions(
    scenes: list[Scene], rng: np.random.Generator, kinds=CAPTION_KINDS
) -> list[str]:
    """One random true caption per scene."""
    return [sample_caption(scene, rng, kinds).text for scene in scenes]


def class_prompts(template: str = CLIP_TEMPLATES[0]) -> list[str]:
    """The zero-shot prompt of every (colour, shape) class, in class-id order."""
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}', got {template!r}")
    return [template.format(name) for name in CLASS_NAMES]
