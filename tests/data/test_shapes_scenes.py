"""Shapes world scenes and pixels: determinism, boxes against rendered pixels,
stencil geometry, the compositional split, detector distributions, box helpers
and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.data import (
    CLASS_NAMES,
    COLOUR_RGB,
    COLOURS,
    DEFAULT_HELD_OUT_PAIRS,
    N_CLASSES,
    SHAPES,
    ShapesWorld,
    box_iou,
    class_similarity,
    detector_distributions,
    location_features,
    render,
    sample_scenes,
    single_object_scenes,
    stack_objects,
    stencil,
)
from minivl.data.shapes import BACKGROUND, max_objects_that_fit

seeds = st.integers(0, 2**32 - 1)


def held_out_ids(pairs=DEFAULT_HELD_OUT_PAIRS):
    return {SHAPES.index(s) * len(COLOURS) + COLOURS.index(c) for c, s in pairs}


# determinism


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = ShapesWorld(seed=3), ShapesWorld(seed=3), ShapesWorld(seed=4)
    sa, sb, sc = a.scenes(50), b.scenes(50), c.scenes(50)
    assert sa == sb
    assert sa != sc
    np.testing.assert_array_equal(a.render(sa), b.render(sb))
    assert a.captions(sa) == b.captions(sb)
    assert [q.question for q in a.vqa(sa)] == [q.question for q in b.vqa(sb)]


def test_explicit_rng_does_not_depend_on_earlier_draws():
    a, b = ShapesWorld(seed=0), ShapesWorld(seed=0)
    a.scenes(30)  # a has drawn before, b has not
    assert a.scenes(10, rng=7) == b.scenes(10, rng=7)


# boxes and pixels


@settings(deadline=None, max_examples=15)
@given(seed=seeds, size=st.sampled_from([16, 24, 32, 48, 64]), k=st.integers(1, 4))
def test_boxes_inside_image_apart_and_tight_around_rendered_pixels(seed, size, k):
    k = min(k, max_objects_that_fit(size))
    scenes = sample_scenes(8, np.random.default_rng(seed), size, 1, k)
    images = render(scenes)  # (N, S, S, 3)
    assert images.shape == (8, size, size, 3) and images.dtype == np.uint8
    for scene, image in zip(scenes, images):
        assert 1 <= len(scene) <= k
        painted = np.any(image != np.array(BACKGROUND, np.uint8), axis=-1)  # (S, S)
        covered = np.zeros_like(painted)
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size
            covered[y1:y2, x1:x2] = True
            inside = painted[y1:y2, x1:x2]
            # every painted pixel in the box has this object's colour (no overlap)
            colours = image[y1:y2, x1:x2][inside]
            assert (colours == COLOUR_RGB[obj.colour]).all()
            # the box is tight to within one pixel on every side
            rows, cols = np.nonzero(inside)
            assert rows.min() <= 1 and cols.min() <= 1
            assert rows.max() >= (y2 - y1) - 2 and cols.max() >= (x2 - x1) - 2
        assert not (painted & ~covered).any(), "paint outside every box"
        for i, a in enumerate(scene.objects):  # boxes keep a gap: no two overlap
            for b in scene.objects[i + 1 :]:
                assert box_iou([a.box], [b.box])[0, 0] == 0


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_stencils_are_mirror_symmetric_and_fill_the_known_area(shape):
    side = 60
    mask = stencil(shape, side, side)
    np.testing.assert_array_equal(mask, mask[:, ::-1])  # every shape is left-right symmetric
    area = {
        "circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5,
        "cross": 5 / 9, "ring": np.pi / 4 * 0.75,
    }[SHAPES[shape]]  # fmt: skip
    assert abs(mask.mean() - area) < 0.03
    if SHAPES[shape] != "triangle":
        np.testing.assert_array_equal(mask, mask[::-1])
        np.testing.assert_array_equal(mask, mask.T)


def test_single_object_scenes_are_big_and_near_the_centre():
    scenes = single_object_scenes(100, np.random.default_rng(0), image_size=32)
    for scene in scenes:
        (obj,) = scene.objects
        x1, y1, x2, y2 = obj.box
        assert x2 - x1 == 20 and y2 - y1 == 20 and 0 <= x1 and x2 <= 32
        cx, cy = obj.centre
        assert abs(cx - 16) <= 3 and abs(cy - 16) <= 3


# the compositional split


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_train_never_shows_held_out_pairs_and_test_always_does(seed):
    world = ShapesWorld(max_objects=4, seed=seed)
    held = held_out_ids()
    for scene in world.scenes(60, split="train"):
        assert not set(scene.class_ids.tolist()) & held
    for scene in world.scenes(60, split="test"):
        assert set(scene.class_ids.tolist()) & held
    for scene in world.single_object_scenes(40, split="test"):
        assert set(scene.class_ids.tolist()) <= held
    for scene in world.single_object_scenes(40, split="train"):
        assert not set(scene.class_ids.tolist()) & held


def test_train_split_still_shows_every_shape_and_colour_and_custom_pairs():
    pairs = [("red", "circle"), ("blue", "circle")]
    world = ShapesWorld(held_out_pairs=pairs, seed=0)
    train = world.scenes(400, split="train")
    classes = {c for s in train for c in s.class_ids.tolist()}
    assert classes == set(range(N_CLASSES)) - held_out_ids(pairs)
    test = world.single_object_scenes(50, split="test")
    assert {CLASS_NAMES[s.class_ids[0]] for s in test} == {"red circle", "blue circle"}


# detector


def test_detector_distributions_are_peaked_on_the_true_class_with_confusions():
    scenes = sample_scenes(200, np.random.default_rng(0))
    exact = detector_distributions(scenes, np.random.default_rng(1), noise=0.0)
    noisy = detector_distributions(scenes, np.random.default_rng(1))
    similarity = class_similarity()
    for scene, p, q in zip(scenes, exact, noisy):
        assert p.shape == (len(scene), N_CLASSES) and q.shape == p.shape
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
        np.testing.assert_allclose(q.sum(axis=1), 1, rtol=1e-5)
        assert (p.argmax(axis=1) == scene.class_ids).all()
        for row, true in zip(p, scene.class_ids):
            # more mass on a look-alike class than on the least similar class
            others = np.delete(np.arange(N_CLASSES), true)
            alike, unlike = (
                others[similarity[true, others].argmax()],
                others[similarity[true, others].argmin()],
            )
            assert row[alike] > row[unlike]
    true_mass = np.concatenate([q[np.arange(len(s)), s.class_ids] for s, q in zip(scenes, noisy)])
    assert 0.5 < true_mass.mean() < 1.0


# boxes helpers


@settings(deadline=None)
@given(
    boxes=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 12), st.integers(1, 12)),
        min_size=1, max_size=6,
    )
)  # fmt: skip
def test_box_iou_matches_a_pixel_count(boxes):
    xyxy = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes])
    iou = box_iou(xyxy, xyxy)
    masks = np.zeros((len(boxes), 40, 40), dtype=bool)
    for m, (x1, y1, x2, y2) in zip(masks, xyxy):
        m[y1:y2, x1:x2] = True
    inter = (masks[:, None] & masks[None]).sum(axis=(2, 3))
    union = (masks[:, None] | masks[None]).sum(axis=(2, 3))
    np.testing.assert_allclose(iou, inter / union)


def test_location_features_and_stack_objects():
    scenes = sample_scenes(5, np.random.default_rng(0), 32, 1, 3)
    loc = location_features(scenes[0].boxes, 32)
    x1, y1, x2, y2 = scenes[0].boxes[0]
    np.testing.assert_allclose(
        loc[0], [x1 / 32, y1 / 32, x2 / 32, y2 / 32, (x2 - x1) * (y2 - y1) / 32**2], rtol=1e-6
    )
    stacked = stack_objects(scenes, max_objects=4)
    assert stacked["boxes"].shape == (5, 4, 4) and stacked["mask"].shape == (5, 4)
    for i, scene in enumerate(scenes):
        assert stacked["mask"][i].sum() == len(scene)
        np.testing.assert_array_equal(stacked["class_ids"][i, : len(scene)], scene.class_ids)
    with pytest.raises(ValueError, match="max_objects"):
        stack_objects(scenes, max_objects=0)


# bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 8}, "image_size"),
        ({"image_size": 32, "max_objects": 12}, "max_objects"),
        ({"image_size": 32, "max_objects": 8}, "fit"),
        ({"max_objects": 0}, "min_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"held_out_pairs": [("red", "hexagon")]}, "shape"),
        ({"held_out_pairs": [("mauve", "circle")]}, "colour"),
        ({"image_size": 48, "grid": 4}, "cell"),
        ({"image_size": 48, "grid": 0}, "grid"),
        ({"image_size": 48, "grid": 2, "max_objects": 5}, "grid"),
    ],
)
def test_bad_world_settings_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesWorld(**kwargs)


def test_bad_requests_raise_value_errors():
    world = ShapesWorld(seed=0)
    with pytest.raises(ValueError, match="n "):
        world.scenes(0)
    with pytest.raises(ValueError, match="split"):
        world.scenes(3, split="validation")
    with pytest.raises(ValueError, match="held-out"):
        ShapesWorld(held_out_pairs=[]).scenes(3, split="test")
    with pytest.raises(ValueError, match="empty"):
        render([])
    with pytest.raises(ValueError, match="image_size"):
        render(
            sample_scenes(1, np.random.default_rng(0), 32)
            + sample_scenes(1, np.random.default_rng(0), 64)
        )
    with pytest.raises(TypeError, match="rng"):
        world.scenes(2, rng="seed")
    with pytest.raises(ValueError, match="question type"):
        world.vqa(world.scenes(2), types=("colour", "weight"))


def test_overlap_allowed_places_more_objects_than_fit_apart():
    world = ShapesWorld(image_size=32, min_objects=7, max_objects=7, allow_overlap=True, seed=0)
    scenes = world.scenes(5)
    assert all(len(s) == 7 for s in scenes)
    assert world.render(scenes).shape == (5, 32, 32, 3)


@settings(deadline=None, max_examples=15)
@given(seed=seeds, size=st.sampled_from([48, 60, 96]), k=st.integers(1, 5))
def test_grid_layout_puts_each_object_whole_inside_its_own_cell(seed, size, k):
    grid = 3
    world = ShapesWorld(image_size=size, max_objects=k, grid=grid, seed=seed)
    cell = size // grid
    scenes = world.scenes(20, objects=(1, k))
    images = world.render(scenes)  # (20, S, S, 3)
    for scene, image in zip(scenes, images):
        cells = []
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            col, row = x1 // cell, y1 // cell
            # the whole box, plus the one-pixel gap, lies inside one cell
            assert x2 + 1 <= (col + 1) * cell and y2 + 1 <= (row + 1) * cell
            cells.append((row, col))
            painted = np.any(image[y1:y2, x1:x2] != 0, axis=-1)
            assert painted.any()
        assert len(set(cells)) == len(cells), "two objects share a cell"
    # sentences about grid scenes stay true: boxes in different cells never overlap
    for scene in scenes:
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1 :]:
                assert box_iou([a.box], [b.box])[0, 0] == 0


def test_grid_layout_uses_every_cell_and_objects_override():
    world = ShapesWorld(image_size=48, max_objects=3, grid=3, seed=0)
    scenes = world.scenes(300, objects=1)
    assert all(len(s) == 1 for s in scenes)
    cells = {(s.objects[0].box[1] // 16, s.objects[0].box[0] // 16) for s in scenes}
    assert cells == {(r, c) for r in range(3) for c in range(3)}
    assert {len(s) for s in world.scenes(200)} == {1, 2, 3}
    assert {len(s) for s in world.scenes(100, objects=(2, 3))} == {2, 3}
