"""The size-swap reading of VCR's count items (``minivl/recipes/vilbert_vcr_sizes.py``): on the
generator's own "count:size" items, the swapped question names the other size, the answers keep
their counts, and the counts parsed are the scene's."""

from __future__ import annotations

import numpy as np

from minivl.data.multiple_choice import multiple_choice_items
from minivl.data.world import ShapesWorld
from minivl.recipes.vilbert_vcr_sizes import answer_count, asked_size, swap_sizes


def _size_items():
    scenes = ShapesWorld(image_size=32, max_objects=3, seed=0).iid_scenes(300, "test", rng=np.random.default_rng(0))
    items = [it for it in multiple_choice_items(scenes, np.random.default_rng(1)) if it.detail == "count:size"]
    assert len(items) > 20
    return scenes, items


def test_the_swapped_question_asks_the_other_size_and_swapping_twice_is_the_identity():
    _, items = _size_items()
    for it in items:
        swapped = swap_sizes(it.question)
        assert swapped != it.question and swap_sizes(swapped) == it.question
        assert asked_size(swapped) == 1 - asked_size(it.question)
        for a in it.answers:
            assert answer_count(swap_sizes(a)) == answer_count(a)  # the options stay the same counts


def test_the_counts_read_off_the_texts_are_the_scene_s():
    scenes, items = _size_items()
    seen = set()
    for it in items:
        sizes = scenes[it.scene_index].sizes
        counts = [answer_count(a) for a in it.answers]
        assert counts[it.answer_label] == int((sizes == asked_size(it.question)).sum())
        assert sorted(counts) == [0, 1, 2, 3]  # every count an option: the swapped truth is one too
        seen.add(counts[it.answer_label])
    assert seen == {0, 1, 2, 3}
