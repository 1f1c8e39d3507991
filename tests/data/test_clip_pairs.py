"""The CLIP pairs of ``minivl.data.clip_pairs``: twins that differ in what their
captions say, retrieval sets with distinct captions, batches that keep twins
together, the grid layout the recipe trains on, and evaluation sets that share
no image, caption or prompt template with training (issue 10 §4)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.data import CLASS_NAMES, ShapesWorld
from minivl.data.clip_pairs import (
    EVAL_TEMPLATES,
    SHIFTS,
    TRAIN_TEMPLATES,
    canonical_caption,
    distinct_caption_set,
    fingerprints,
    make_clip_data,
    one_object_scenes,
    overlap,
    shapes_pairs,
    shifted_scenes,
    twin_scene,
)
from minivl.recipes.clip import batches


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
    images, captions, evals = make_clip_data("shapes", n_train=40, image_size=48, seed=0,
                                        n_zero_shot=30, n_retrieval=20, twins=True, grid=3)
    assert images.shape == (40, 48, 48, 3) and len(captions) == 40
    held_images, held_labels = evals["held_out"]
    assert held_images.shape == (30, 48, 48, 3)
    assert set(held_labels.tolist()) <= set(evals["held_out_ids"])
    world = ShapesWorld(image_size=48, grid=3, seed=0)
    single = one_object_scenes(world, 50, "train", np.random.default_rng(1))
    assert all(len(s) == 1 for s in single)
    assert len({s.objects[0].box[:2] for s in single}) > 1  # not always the centre


def test_evaluation_sets_share_no_image_or_caption_with_training():
    # a small training set drawn from a small world, so collisions would be common by chance
    images, captions, evals = make_clip_data("shapes", n_train=3000, image_size=48, seed=0,
                                             n_zero_shot=200, n_retrieval=200, partial=0.5,
                                             twins=True, grey=1.0, grid=3)
    counts = overlap(images, captions, evals)
    assert set(counts) == {"held_out_images_in_train", "seen_images_in_train",
                           "retrieval_images_in_train", "retrieval_captions_in_train"}
    assert all(v == 0 for v in counts.values()), counts
    assert len(evals["seen"][0]) == 200 and len(fingerprints(evals["seen"][0])) == 200  # no repeats
    # the counter itself sees a copied image and a copied caption
    leaky = {"seen": (images[:3], np.zeros(3)), "retrieval": (images[:2], captions[:2])}
    assert overlap(images, captions, leaky) == {"seen_images_in_train": 3, "retrieval_images_in_train": 2,
                                                "retrieval_captions_in_train": 2}


def test_digit_test_images_are_not_training_images():
    images, captions, evals = make_clip_data("digits", n_train=0, image_size=16, seed=0)
    assert overlap(images, captions, evals) == {"test_images_in_train": 0}
    assert len(evals["test"][0]) > 150


def test_zero_shot_prompts_never_wrote_a_training_caption():
    assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)
    _, captions, _ = make_clip_data("shapes", n_train=4000, image_size=48, seed=0, n_zero_shot=10,
                                    n_retrieval=10, partial=0.5, twins=True, grid=3)
    prompts = {t.format(name) for t in EVAL_TEMPLATES for name in CLASS_NAMES}
    assert not prompts & set(captions)
    frames = {t.split("{}")[0] for t in EVAL_TEMPLATES}  # "an image of a ", "this is a ", ...
    assert not any(c.startswith(f) for c in captions for f in frames)


@pytest.mark.parametrize("shift", (None, *SHIFTS))
def test_shifted_renders_keep_the_class_and_change_the_picture(shift):
    images, labels = shifted_scenes(40, shift, np.random.default_rng(0))
    assert images.shape == (40, 48, 48, 3) and images.dtype == np.uint8
    assert set(labels["class"].tolist()).isdisjoint(ShapesWorld(image_size=48, grid=3).held_out_class_ids)
    base, _ = shifted_scenes(40, None, np.random.default_rng(0))
    if shift == "grey":
        assert (images[..., 0] == images[..., 1]).all()
    if shift == "new background":
        assert (images[:, 0, 0] == (70, 70, 160)).all()
    if shift is not None:
        assert not fingerprints(images) & fingerprints(base)
    with pytest.raises(ValueError, match="shift"):
        shifted_scenes(2, "upside down", np.random.default_rng(0))
