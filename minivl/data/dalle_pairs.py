"""Caption-image pairs for the DALL-E prior (lecture S22, S26-S28), with the two
held-out sets its generations are judged on.

Scenes are 32 x 32 shapes-world images (the dVAE's size) of one or two objects,
each in a cell of a 2 x 2 grid, and every caption names every object, so a
generated image can be checked against its caption alone:

* ``"list"``: "a small red circle and a blue square." (sizes named half the time);
* ``"relation"``: "a red circle is above a blue square." (two objects).

Evaluation sets (drawn from a generator independent of the training draw):

* ``held_out_scenes``: scenes of trained (colour, shape) pairs whose caption
  text never occurs in training (new wordings of new scenes);
* ``held_out_pairs``: scenes that show at least one (colour, shape) pair never
  seen together in training (``DEFAULT_HELD_OUT_PAIRS``: red triangle, green
  ring, ...): compositional generation.

``Pairs.structured`` keeps each caption as a ``Caption`` so a judge can test
it (``caption_says``) on what it reads in an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.captions import Caption, holds, sample_caption
from minivl.data.shapes import Scene
from minivl.data.world import ShapesWorld

IMAGE_SIZE = 32
GRID = 2  # 2 x 2 cells of 16 px: one or two objects, each whole inside its cell
KINDS = ("list", "relation")


@dataclass
class Pairs:
    """``images (N, S, S, 3)`` uint8, ``captions`` (text), ``structured`` (Caption) and ``scenes``."""

    images: np.ndarray
    captions: list[str]
    structured: list[Caption]
    scenes: list[Scene]

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index) -> Pairs:
        index = np.arange(len(self))[index]
        return Pairs(self.images[index], [self.captions[i] for i in index],
                     [self.structured[i] for i in index], [self.scenes[i] for i in index])


def caption_says(caption: Caption, scene: Scene) -> bool:
    """The caption is true of the scene and names all of it: as many objects as phrases."""
    return len(scene) == len(caption.phrases) and holds(caption, scene)


def _pairs(world, scenes, rng) -> Pairs:
    structured = [sample_caption(s, rng, KINDS) for s in scenes]
    return Pairs(world.render(scenes), [c.text for c in structured], structured, scenes)


def _fresh(world, n, split, rng, avoid, max_rounds=50) -> Pairs:
    """``n`` pairs of ``split`` whose caption text is not in ``avoid`` (nor repeated)."""
    keep_scenes, keep, seen = [], [], set(avoid)
    for _ in range(max_rounds):
        scenes = world.scenes(2 * n, split=split, rng=rng)
        for scene, caption in zip(scenes, (sample_caption(s, rng, KINDS) for s in scenes)):
            if caption.text not in seen:
                seen.add(caption.text)
                keep_scenes.append(scene)
                keep.append(caption)
                if len(keep) == n:
                    return Pairs(world.render(keep_scenes), [c.text for c in keep], keep, keep_scenes)
    raise ValueError(f"found only {len(keep)} of {n} {split} captions absent from training")


def make_dalle_data(n_train: int = 20000, seed: int = 0, n_eval: int = 200, max_objects: int = 2,
                    image_size: int = IMAGE_SIZE, grid: int = GRID):
    """``(train, evals)``: training ``Pairs`` and ``{"held_out_scenes", "held_out_pairs"}`` Pairs.

    Training scenes never show a held-out (colour, shape) pair; neither
    evaluation set repeats a training caption.
    """
    if n_train < 1 or n_eval < 1:
        raise ValueError(f"n_train and n_eval must be >= 1, got {n_train} and {n_eval}")
    world = ShapesWorld(image_size=image_size, max_objects=max_objects, seed=seed, grid=grid)
    rng = np.random.default_rng(seed)
    train = _pairs(world, world.scenes(n_train, split="train", rng=rng), rng)
    test_rng = np.random.default_rng([seed, 13])  # independent of how much was trained on
    avoid = set(train.captions)
    evals = {"held_out_scenes": _fresh(world, n_eval, "train", test_rng, avoid),
             "held_out_pairs": _fresh(world, n_eval, "test", test_rng, avoid)}
    return train, evals


__all__ = ["GRID", "IMAGE_SIZE", "KINDS", "Pairs", "caption_says", "make_dalle_data"]
