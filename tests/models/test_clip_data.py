"""The CLIP training data of ``minivl.commands.clip``: twins that differ in what
their captions say, retrieval sets with distinct captions, batches that keep
twins together, and the grid layout the recipe trains on."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.commands.clip import (
    batches,
    canonical_caption,
    distinct_caption_set,
    make_data,
    one_object_scenes,
    shapes_pairs,
    twin_scene,
)
from minivl.data import CLASS_NAMES, ShapesWorld


def contents(scene):
    """What a caption can say about a scene: the multiset of (size, colour, shape)."""
    return Counter((o.size, o.colour, o.shape) for o in scene.objects)


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_twin_changes_one_thing_the_caption_says_and_keeps_held_out_pairs_out(seed):
    world = ShapesWorld(image_size=48, max_objects=3, grid=3, seed=seed)
    rng = np.random.default_rng(seed)
    for scene in world.scenes(20, split="train", rng=rng):
        twin = twin_scene(scene, rng, world.held_out_class_ids)
        if twin is None:
            continue
        assert [o.box for o in twin.objects] == [o.box for o in scene.objects]  # same places
        assert contents(twin) != contents(scene)  # never the same scene described twice
        changed = [(a, b) for a, b in zip(scene.objects, twin.objects) if a != b]
        if len(changed) == 1:  # one object recoloured or reshaped, not both
            (a, b), = changed
            assert (a.colour != b.colour) + (a.shape != b.shape) == 1
        else:  # two objects swapped colours
            (a1, b1), (a2, b2) = changed
            assert (b1.colour, b2.colour) == (a2.colour, a1.colour)
            assert (a1.shape, a1.size) == (b1.shape, b1.size)
        assert not {o.class_id for o in twin.objects} & world.held_out_class_ids


def test_retrieval_set_captions_are_distinct_and_name_every_object():
    world = ShapesWorld(image_size=48, max_objects=3, grid=3, seed=0)
    scenes, captions = distinct_caption_set(world, 200, np.random.default_rng(0))
    assert len(scenes) == len(set(captions)) == 200
    for scene, caption in zip(scenes, captions):
        assert caption == canonical_caption(scene)
        assert sum(caption.count(name) for name in CLASS_NAMES) >= len(scene)
    # equal contents give equal captions, whatever the drawing order
    reversed_scene = type(scenes[0])(scenes[0].image_size, scenes[0].objects[::-1])
    assert canonical_caption(reversed_scene) == captions[0]


def test_training_pairs_put_twins_side_by_side_and_batches_keep_them_together():
    world = ShapesWorld(image_size=48, max_objects=3, grid=3, seed=0)
    rng = np.random.default_rng(0)
    images, captions = shapes_pairs(world, n_single=10, n_multi=20, rng=rng, twins=True)
    assert images.shape == (30, 48, 48, 3) and len(captions) == 30
    multi = images[10:]
    for k in range(0, 20, 2):  # a twin keeps its sibling's layout: some pixels change
        assert (multi[k] != multi[k + 1]).any()
        assert captions[10 + k] != captions[10 + k + 1]
    ids = np.arange(30)[:, None]  # one "token" per pair: its row
    mask = np.ones_like(ids, dtype=bool)
    _, batch_ids, _ = next(batches(images[10:], ids[10:], mask[10:], batch_size=8, seed=0,
                                   groups=2))
    rows = batch_ids[:, 0] - 10
    assert (rows[0::2] % 2 == 0).all() and (rows[1::2] == rows[0::2] + 1).all()


def test_grid_recipe_data_shapes_and_held_out_labels():
    images, captions, evals = make_data("shapes", n_train=40, image_size=48, seed=0,
                                        n_zero_shot=30, n_retrieval=20, twins=True, grid=3)
    assert images.shape == (40, 48, 48, 3) and len(captions) == 40
    held_images, held_labels = evals["held_out"]
    assert held_images.shape == (30, 48, 48, 3)
    assert set(held_labels.tolist()) <= set(evals["held_out_ids"])
    world = ShapesWorld(image_size=48, grid=3, seed=0)
    single = one_object_scenes(world, 50, "train", np.random.default_rng(1))
    assert all(len(s) == 1 for s in single)
    assert len({s.objects[0].box[:2] for s in single}) > 1  # not always the centre


def test_layout_must_be_known():
    from minivl.commands.clip import train_clip

    with pytest.raises(ValueError, match="layout"):
        train_clip(layout="spiral", steps=1)
