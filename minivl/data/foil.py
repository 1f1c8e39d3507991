"""FOIL: a true caption with one word swapped so that it becomes false (lecture S02).

"a red circle is left of a blue square." -> "a red ring is left of a blue
square." The model must say the caption is wrong and point at the wrong word.
We swap a shape, colour or size word of one phrase, or a relation word for its
opposite ("left" -> "right", "bigger" -> "smaller"), and keep the swap only if
it makes the caption false in the strong sense:

- a list caption: the changed phrase fits no object at all;
- a relation caption: no pair of objects fits the changed caption.

Because sizes and relations keep their synonym variant, exactly one word
changes, and ``position`` indexes it in ``split_words(caption)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from minivl.data.captions import Caption, holds, sample_caption
from minivl.data.language import OPPOSITE, choice, split_words, with_field
from minivl.data.shapes import COLOURS, SHAPES, SIZES, Scene

FOIL_KINDS = ("shape", "colour", "size", "relation")
_N_VALUES = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES)}


@dataclass(frozen=True)
class Foil:
    """A false caption, the true one it came from, and the swapped word."""

    caption: str
    original: str
    position: int  # index of the swapped word in split_words(caption)
    original_word: str
    foil_word: str
    kind: str  # one of FOIL_KINDS
    scene_index: int


def foil_candidates(caption: Caption, scene: Scene) -> dict[str, list[Caption]]:
    """Every one-word change of the caption that makes it false, by kind."""
    out = {kind: [] for kind in FOIL_KINDS}
    for k, phrase in enumerate(caption.phrases):
        for field, n_values in _N_VALUES.items():
            old = getattr(phrase, field)
            if old is None:
                continue
            for value in range(n_values):
                if value == old:
                    continue
                new_phrase = with_field(phrase, field, value)
                phrases = caption.phrases[:k] + (new_phrase,) + caption.phrases[k + 1 :]
                foiled = replace(caption, phrases=phrases)
                if caption.kind == "list":
                    false = not new_phrase.select(scene)
                else:
                    false = not holds(foiled, scene)
                if false:
                    out[field].append(foiled)
    if caption.kind == "relation":
        foiled = replace(caption, relation=OPPOSITE[caption.relation])
        if not holds(foiled, scene):
            out["relation"].append(foiled)
    return out


def foil_caption(
    caption: Caption, scene: Scene, scene_index: int, rng: np.random.Generator
) -> Foil | None:
    """A random false one-word change of a true list or relation caption (None if there is none)."""
    if caption.kind not in ("list", "relation"):
        raise ValueError(
            f"FOIL swaps words of list or relation captions, got kind {caption.kind!r}"
        )
    candidates = {k: v for k, v in foil_candidates(caption, scene).items() if v}
    if not candidates:
        return None
    kind = choice(rng, sorted(candidates))
    foiled = choice(rng, candidates[kind])
    before, after = split_words(caption.text), split_words(foiled.text)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(before) == len(after) and len(changed) == 1, (caption.text, foiled.text)
    (position,) = changed
    return Foil(
        caption=foiled.text,
        original=caption.text,
        position=position,
        original_word=before[position],
        foil_word=after[position],
        kind=kind,
        scene_index=scene_index,
    )


def foil_items(scenes: list[Scene], rng: np.random.Generator) -> list[Foil]:
    """One FOIL item per scene (scenes where no swap is false are skipped)."""
    out = []
    for index, scene in enumerate(scenes):
        caption = sample_caption(scene, rng, kinds=("list", "relation"))
        item = foil_caption(caption, scene, index, rng)
        if item is not None:
            out.append(item)
    return out
