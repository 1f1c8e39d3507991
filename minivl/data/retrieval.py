"""Caption-based image retrieval with hard negatives (lecture S10, CLIP's retrieval S17).

Every scene gets a positive caption that lists all its objects, and hard
negative captions that differ from it in one attribute ("a red circle and a
blue square." vs "a red circle and a green square."), each false for the
scene (see foil.py). ``four_way`` builds ViLBERT's retrieval training
candidates (FIDELITY): the true pair, the image with another scene's caption,
another image with this caption, and the image with a hard negative; the model
scores each with Linear(1) and takes a softmax over the four.

A caption "describes" a scene when its phrases fit the scene's objects one to
one, so no negative of either kind describes the image it is paired with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.captions import Caption, holds, sample_caption
from minivl.data.foil import foil_candidates
from minivl.data.shapes import Scene


@dataclass(frozen=True)
class RetrievalItem:
    scene_index: int
    caption: str  # describes the scene
    hard_negatives: tuple[str, ...]  # one attribute away from caption, false for the scene


@dataclass(frozen=True)
class FourWay:
    """Four (image, caption) candidates; ``label`` indexes the true pair."""

    image_indices: tuple[int, ...]
    captions: tuple[str, ...]
    label: int


def describes(caption: Caption, scene: Scene) -> bool:
    """A list caption fits the scene's objects one to one."""
    return caption.kind == "list" and len(caption.phrases) == len(scene) and holds(caption, scene)


def _hard_negatives(caption: Caption, scene: Scene, n_hard: int, rng) -> tuple[str, ...]:
    texts = sorted({c.text for cs in foil_candidates(caption, scene).values() for c in cs})
    picked = rng.choice(len(texts), min(n_hard, len(texts)), replace=False)
    return tuple(texts[i] for i in picked)


def retrieval_items(
    scenes: list[Scene], rng: np.random.Generator, n_hard: int = 3
) -> list[RetrievalItem]:
    """A describing caption and ``n_hard`` hard negatives for every scene."""
    if n_hard < 0:
        raise ValueError(f"n_hard must be >= 0, got {n_hard}")
    out = []
    for index, scene in enumerate(scenes):
        caption = sample_caption(scene, rng, kinds=("list",))
        out.append(RetrievalItem(index, caption.text, _hard_negatives(caption, scene, n_hard, rng)))
    return out


def four_way(scenes: list[Scene], rng: np.random.Generator, tries: int = 100) -> list[FourWay]:
    """ViLBERT's four retrieval candidates for every scene (needs at least 2 scenes)."""
    if len(scenes) < 2:
        raise ValueError(f"four_way needs at least 2 scenes, got {len(scenes)}")
    captions = [sample_caption(scene, rng, kinds=("list",)) for scene in scenes]
    out = []
    for i, scene in enumerate(scenes):
        hard = _hard_negatives(captions[i], scene, 1, rng)
        if not hard:
            continue
        # another scene whose caption does not describe this image, and vice versa
        for _ in range(tries):
            j = int(rng.integers(len(scenes)))
            if not (describes(captions[j], scene) or describes(captions[i], scenes[j])):
                break
        else:
            continue
        pairs = [(i, captions[i].text), (i, captions[j].text), (j, captions[i].text), (i, hard[0])]
        order = rng.permutation(4)  # the true pair starts at 0
        out.append(
            FourWay(
                image_indices=tuple(pairs[k][0] for k in order),
                captions=tuple(pairs[k][1] for k in order),
                label=int(np.argmin(order)),
            )
        )
    return out
