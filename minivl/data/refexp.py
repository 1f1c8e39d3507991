"""Referring expressions: a phrase that picks out exactly one object (lecture S02, S10).

The stand-in for RefCOCO: "the small red circle", "the leftmost circle",
"the circle to the left of the blue square". Three forms:

- ``"attribute"``: attributes that fit the target and nothing else;
- ``"superlative"``: among the objects fitting some attributes, the target
  has the strictly smallest / largest centre x (leftmost / rightmost) or y
  (topmost / bottommost);
- ``"relation"``: the only object fitting some attributes that stands in a
  relation to a landmark, the landmark itself named uniquely.

Every expression is unambiguous by construction. ViLBERT grounds it by
scoring every region; its target is each region's IoU with ``box``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.language import (
    UNIQUE_FIELDS,
    check_kinds,
    choice,
    describe,
    relation_words,
    unique_descriptions,
)
from minivl.data.shapes import RELATIONS, Scene, relation_holds

REFEXP_FORMS = ("attribute", "superlative", "relation")
# word -> (centre coordinate compared: 0 = x, 1 = y; +1 smallest wins, -1 largest wins)
SUPERLATIVES = {"leftmost": (0, 1), "rightmost": (0, -1), "topmost": (1, 1), "bottommost": (1, -1)}


@dataclass(frozen=True)
class RefExp:
    """An expression, the object it refers to (index into the scene) and that object's box."""

    text: str
    target: int
    box: tuple[int, int, int, int]
    form: str
    scene_index: int


def _attribute(scene, t, v):
    return [f"the {d.words(variant=v)}" for d in unique_descriptions(scene, t)]


def _superlative(scene, t, v):
    out = []
    for fields in UNIQUE_FIELDS:
        d = describe(scene.objects[t], fields)
        matches = d.select(scene)
        if len(matches) < 2:  # one match is the attribute form
            continue
        for word, (axis, sign) in SUPERLATIVES.items():
            key = {i: sign * scene.objects[i].centre[axis] for i in matches}
            if all(key[t] < key[i] for i in matches if i != t):
                out.append(f"the {word} {d.words(variant=v)}")
    return out


def _relation(scene, t, v):
    out = []
    target = scene.objects[t]
    for landmark_index, landmark in enumerate(scene.objects):
        if landmark_index == t:
            continue
        for landmark_phrase in unique_descriptions(scene, landmark_index):
            for relation in RELATIONS:
                if not relation_holds(relation, target, landmark):
                    continue
                for fields in UNIQUE_FIELDS:
                    d = describe(target, fields)
                    fitting = [
                        i for i in d.select(scene)
                        if i != landmark_index
                        and relation_holds(relation, scene.objects[i], landmark)
                    ]  # fmt: skip
                    if fitting == [t]:
                        out.append(
                            f"the {d.words(variant=v)} {relation_words(relation, v)} "
                            f"the {landmark_phrase.words(variant=v)}"
                        )
    return out


_FORMS = {"attribute": _attribute, "superlative": _superlative, "relation": _relation}


def expressions(scene: Scene, target: int, variant: int = 0) -> dict[str, list[str]]:
    """Every expression of each form that refers to object ``target`` alone."""
    return {form: build(scene, target, variant) for form, build in _FORMS.items()}


def refexp_items(scenes: list[Scene], rng: np.random.Generator, forms=REFEXP_FORMS) -> list[RefExp]:
    """One referring expression per scene: a random target, form and wording.

    Scenes where no object can be singled out (possible only with overlap) are skipped.
    """
    forms = check_kinds(forms, REFEXP_FORMS, "expression form")
    out = []
    for index, scene in enumerate(scenes):
        variant = int(rng.integers(2))
        for target in rng.permutation(len(scene)):
            target = int(target)
            found = expressions(scene, target, variant)
            available = [f for f in forms if found[f]]
            if available:
                form = choice(rng, available)
                text = choice(rng, found[form])
                out.append(RefExp(text, target, scene.objects[target].box, form, index))
                break
    return out
