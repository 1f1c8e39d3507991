"""The label checks of ``minivl/recipes/vilbert_foil_probe.py`` on a small FOIL task (regions
from a stand-in encoder with the real 5-d location, so no detector is trained)."""

from __future__ import annotations

import numpy as np

from minivl.data import ShapesWorld
from minivl.data.boxes import location_features
from minivl.data.corpus import build_corpus
from minivl.data.vilbert_tasks import make_task
from minivl.recipes.vilbert_foil_probe import check_labels, subset
from tests.data.test_vilbert_tasks import OneHotRegions


class LocatedRegions(OneHotRegions):
    """OneHotRegions with ViLBERT's 5-d location, area included."""

    def encode(self, images, scenes, jitter=0.0, rng=None):
        batch = OneHotRegions.encode(self, images, scenes, jitter, rng)
        for i, s in enumerate(scenes):
            batch.locs[i, 1:1 + len(s)] = location_features(s.boxes, s.image_size)
        return batch


def test_foil_labels_hold_on_their_scenes_and_sizes_are_absolute():
    data = make_task("foil", ShapesWorld(seed=0), build_corpus(seed=0).tokenizer, LocatedRegions(),
                     sizes=(150, 10, 10))
    out = check_labels(data)
    assert out["size_swaps_checked"] > 20 and out["relation_swaps_checked"] > 10
    assert out["size_foil_false_and_original_true"] == 1.0
    assert out["relation_foil_false_and_original_true"] == 1.0
    gap = out["size_is_absolute"]
    assert gap["largest_small_region_area"] < gap["smallest_large_region_area"]
    assert out["region_boxes_are_scene_boxes"]
    assert len(out["examples"]["size"]) == 20 and {"original", "foil", "objects"} <= set(out["examples"]["size"][0])


def test_subset_keeps_the_items_asked_for():
    data = make_task("foil", ShapesWorld(seed=0), build_corpus(seed=0).tokenizer, LocatedRegions(),
                     sizes=(40, 10, 10))
    split = data["train"]
    index = np.flatnonzero(split.groups == "colour")
    part = subset(split, index)
    assert len(part) == len(index) and (part.groups == "colour").all()
    np.testing.assert_array_equal(part.ids, split.ids[index])
    np.testing.assert_array_equal(part.targets["word"], split.targets["word"][index])
    assert part.texts == [split.texts[i] for i in index]
