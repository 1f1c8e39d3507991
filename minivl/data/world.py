"""``ShapesWorld``: one object that makes every shapes-world dataset.

    world = ShapesWorld(image_size=32, max_objects=3, seed=0)
    scenes = world.scenes(1000, split="train")      # list[Scene]
    images = world.render(scenes)                   # (1000, 32, 32, 3) uint8
    texts = world.captions(scenes)                  # list[str]
    qa = world.vqa(scenes)                          # list[VQAItem]
    val = world.iid_scenes(300, "val")              # an i.i.d. part no train scene shares

Each method draws from the world's own generator (seeded once), so two worlds
with the same seed that make the same calls return the same data. Pass
``rng=`` (a Generator or an int seed) to draw from elsewhere, e.g. a fixed test
set that does not depend on how much training data was drawn before it.
"""

from __future__ import annotations

import numpy as np

from minivl.data.captions import CAPTION_KINDS, CLIP_TEMPLATES, class_prompts, sample_captions
from minivl.data.detector import detector_distributions
from minivl.data.dialog import dialog_items
from minivl.data.foil import foil_items
from minivl.data.instructions import INSTRUCTION_KINDS, instruction_items
from minivl.data.multiple_choice import MC_KINDS, multiple_choice_items
from minivl.data.nlvr import NLVR_KINDS, nlvr_items
from minivl.data.refexp import REFEXP_FORMS, refexp_items
from minivl.data.render import render
from minivl.data.retrieval import four_way, retrieval_items
from minivl.data.shapes import (
    CLASS_NAMES,
    DEFAULT_HELD_OUT_PAIRS,
    Scene,
    check_scene_options,
    held_out_class_ids,
    sample_scenes,
    single_object_scenes,
)
from minivl.data.splits import DEFAULT_FRACTIONS, iid_scenes
from minivl.data.vqa import QUESTION_TYPES, vqa_items


class ShapesWorld:
    """Seeded generator of scenes, images and every text task over them."""

    class_names = CLASS_NAMES

    def __init__(
        self,
        image_size: int = 32,
        max_objects: int = 3,
        min_objects: int = 1,
        allow_overlap: bool = False,
        held_out_pairs=DEFAULT_HELD_OUT_PAIRS,
        seed: int = 0,
        grid: int | None = None,
    ):
        check_scene_options(image_size, min_objects, max_objects, allow_overlap, grid)
        self.grid = grid
        self.held_out_class_ids = held_out_class_ids(held_out_pairs)
        self.image_size = image_size
        self.min_objects, self.max_objects = min_objects, max_objects
        self.allow_overlap = allow_overlap
        self.held_out_pairs = tuple(tuple(p) for p in held_out_pairs)
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"ShapesWorld(image_size={self.image_size}, objects={self.min_objects}.."
            f"{self.max_objects}, allow_overlap={self.allow_overlap}, grid={self.grid}, "
            f"held_out_pairs={len(self.held_out_pairs)})"
        )

    def _rng(self, rng) -> np.random.Generator:
        if rng is None:
            return self.rng
        if isinstance(rng, np.random.Generator):
            return rng
        if isinstance(rng, (int, np.integer)):
            return np.random.default_rng(rng)
        raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng)}")

    # scenes and pixels

    def scenes(self, n: int, split: str = "all", rng=None, objects=None) -> list[Scene]:
        """``n`` scenes; split "train" never shows a held-out pair, "test" always does, "all" any.

        ``objects``: an int or a ``(min, max)`` pair that overrides the world's
        number of objects per scene for this call.
        """
        low, high = (self.min_objects, self.max_objects) if objects is None else \
            (objects, objects) if isinstance(objects, (int, np.integer)) else tuple(objects)
        return sample_scenes(
            n, self._rng(rng), self.image_size, low, high,
            split, self.held_out_pairs, self.allow_overlap, self.grid,
        )  # fmt: skip

    def iid_scenes(
        self,
        n: int,
        part: str,
        rng=None,
        fractions=DEFAULT_FRACTIONS,
        split: str = "all",
        key: str = "objects",
    ) -> list[Scene]:
        """``n`` scenes of the i.i.d. ``part`` ("train", "val" or "test", see ``splits.py``):
        no scene, nor any caption listing a scene's objects, is in two parts. Build
        every task of one part from that part's scenes. (``split`` is the compositional
        split, applied as well; ``key="scene"`` splits by the image instead.)"""
        return iid_scenes(
            n, part, self._rng(rng), fractions, key=key,
            image_size=self.image_size, min_objects=self.min_objects,
            max_objects=self.max_objects, split=split, held_out_pairs=self.held_out_pairs,
            allow_overlap=self.allow_overlap, grid=self.grid,
        )  # fmt: skip

    def single_object_scenes(self, n: int, split: str = "all", rng=None) -> list[Scene]:
        """``n`` scenes of one big centred object (labels: ``scene.class_ids[0]``)."""
        return single_object_scenes(n, self._rng(rng), self.image_size, split, self.held_out_pairs)

    def render(self, scenes: list[Scene]) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 images."""
        return render(scenes)

    def detector(self, scenes: list[Scene], rng=None, **kwargs) -> list[np.ndarray]:
        """Per scene, ``(K, n_classes)`` simulated detector distributions."""
        return detector_distributions(scenes, self._rng(rng), **kwargs)

    # text (each method is the module function of the same task, on this world's generator)

    def captions(self, scenes, rng=None, kinds=CAPTION_KINDS) -> list[str]:
        return sample_captions(scenes, self._rng(rng), kinds)

    def class_prompts(self, template: str = CLIP_TEMPLATES[0]) -> list[str]:
        return class_prompts(template)

    def vqa(self, scenes, rng=None, per_scene: int = 1, types=QUESTION_TYPES):
        return vqa_items(scenes, self._rng(rng), per_scene, types)

    def refexps(self, scenes, rng=None, forms=REFEXP_FORMS):
        return refexp_items(scenes, self._rng(rng), forms)

    def foils(self, scenes, rng=None):
        return foil_items(scenes, self._rng(rng))

    def nlvr(self, scenes, n: int, rng=None, kinds=NLVR_KINDS):
        """``n`` statements about pairs drawn from ``scenes`` (items index into it)."""
        return nlvr_items(scenes, n, self._rng(rng), kinds)

    def dialogs(self, scenes, rng=None, n_turns: int = 5):
        return dialog_items(scenes, self._rng(rng), n_turns)

    def multiple_choice(self, scenes, rng=None, kinds=MC_KINDS):
        return multiple_choice_items(scenes, self._rng(rng), kinds)

    def retrieval(self, scenes, rng=None, n_hard: int = 3):
        return retrieval_items(scenes, self._rng(rng), n_hard)

    def four_way(self, scenes, rng=None):
        return four_way(scenes, self._rng(rng))

    def instructions(self, scenes, rng=None, kinds=INSTRUCTION_KINDS):
        return instruction_items(scenes, self._rng(rng), kinds)
