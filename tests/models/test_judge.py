"""The judge of generations (``minivl/models/judge.py``, ``minivl/recipes/judge.py``):
labels and features by hand, a short training run that reads real test renders
above a floor, readings that give every object its class, size and box, and
``matches`` accepting true captions and rejecting changed ones."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.data import render
from minivl.data.captions import Caption, sample_caption
from minivl.data.language import Description
from minivl.data.shapes import COLOUR_RGB, Scene, ShapeObject
from minivl.models.dvae import pixels
from minivl.models.judge import Judge, cell_features
from minivl.recipes.judge import judge_data, train_judge


def scene_of(*objects):
    return Scene(32, tuple(objects))


RED_CIRCLE = ShapeObject(0, 0, 1, (2, 3, 12, 13))  # large, cell 0
BLUE_SQUARE = ShapeObject(1, 2, 0, (20, 21, 26, 27))  # small, cell 3


def test_labels_by_hand():
    shapes, colours, sizes = Judge().labels([scene_of(RED_CIRCLE, BLUE_SQUARE)])
    assert shapes.tolist() == [[1, 0, 0, 2]]  # 0 = empty, shape + 1
    assert colours.tolist() == [[0, -100, -100, 2]] and sizes.tolist() == [[1, -100, -100, 0]]
    with pytest.raises(ValueError, match="two objects in cell"):
        Judge().labels([scene_of(RED_CIRCLE, ShapeObject(0, 1, 0, (9, 9, 15, 15)))])


def test_cell_features_by_hand():
    image = pixels(render([scene_of(BLUE_SQUARE)]))  # (1, 3, 32, 32)
    f = cell_features(image[:, :, 16:, 16:])  # the bottom-right cell
    assert f[0, :64].tolist() == [1.0] * 64  # a square fills its box
    np.testing.assert_allclose(f[0, 64:67], COLOUR_RGB[2] / 255, rtol=1e-6)
    np.testing.assert_allclose(f[0, 67:], [6 / 16, 6 / 16, 36 / 256], rtol=1e-6)
    assert not cell_features(image[:, :, :16, :16]).any()  # an empty cell: nothing at all


@pytest.fixture(scope="module")
def trained():
    data = judge_data(n_train=3000, n_test=200, seed=0)
    return train_judge(steps=250, data=data, progress=False, eval_every=0)


def test_reads_real_renders_above_a_floor(trained):
    from minivl.recipes.judge import accuracy

    model, data = trained["model"], trained["data"]
    for name in ("test", "held_out"):  # held-out pairs too: the judge is trained on every pair
        assert accuracy(model, *data[name])["exact"] >= 0.95, name


def test_readings_are_the_scenes(trained):
    """Each object read with its class, size and pixel box: every relation a caption may
    state (boxes for left / above, sizes for bigger) is then read as it is drawn."""
    model, (images, scenes) = trained["model"], trained["data"]["test"]
    key = lambda o: (o.box, o.class_id, o.size)  # noqa: E731
    same = [sorted(map(key, got.objects)) == sorted(map(key, want.objects))
            for got, want in zip(model.reads(images[:100]), scenes[:100])]
    assert np.mean(same) >= 0.95


def test_matches_captions_and_scenes(trained):
    model, (images, scenes) = trained["model"], trained["data"]["test"]
    rng = np.random.default_rng(0)
    captions = [sample_caption(s, rng, ("list",)) for s in scenes[:40]]
    assert model.matches(images[:40], captions).mean() >= 0.95
    assert model.matches(images[:40], scenes[:40]).mean() >= 0.95
    # the same captions with the first object's colour changed are (almost all) false
    changed = [Caption(c.kind, (Description(colour=(c.phrases[0].colour + 1) % 6, shape=c.phrases[0].shape,
                                            size=c.phrases[0].size), *c.phrases[1:]),
                       c.relation, c.counts, c.template, c.variant) for c in captions]
    assert model.matches(images[:40], changed).mean() <= 0.1
    # a caption that names fewer objects than the image shows is not exactly what it shows
    two = [i for i, s in enumerate(scenes[:40]) if len(s) >= 2][:5]
    shorter = [Caption("list", captions[i].phrases[:1]) for i in two]
    assert not model.matches(images[two], shorter).any()
    with pytest.raises(ValueError, match="images but"):
        model.matches(images[:3], captions[:2])


def test_confusion_counts_an_erased_object_as_read_empty(trained):
    from minivl.recipes.judge import confusion

    model, (images, scenes) = trained["model"], trained["data"]["test"]
    x = pixels(images).copy()
    erased = {"small": 0, "large": 0}
    for i, scene in enumerate(scenes[:40]):  # blank the cell of each scene's first object
        obj = scene.objects[0]
        x1, y1 = obj.box[:2]
        cy, cx = (y1 // model.cell) * model.cell, (x1 // model.cell) * model.cell
        x[i, :, cy:cy + model.cell, cx:cx + model.cell] = 0
        erased[("small", "large")[obj.size]] += 1
    table = confusion(model, x, scenes)
    assert table["columns"][0] == "empty"
    for size, n in erased.items():
        part = table["by_size"][size]
        read_empty = sum(row[0] for row in part["table"].values())
        assert read_empty >= n  # every erased object is read as an empty cell
        right = sum(row[i + 1] for i, row in enumerate(part["table"].values()))
        assert right == pytest.approx(part["shape_accuracy"] * part["objects"])
        assert sum(map(sum, part["table"].values())) == part["objects"]
