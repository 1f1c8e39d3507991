"""The region detector (``minivl/models/detector.py``, S04) and its recipe: shapes,
RoI mean-pooling against a loop over the cells whose centres lie in the box,
the pooling's gradient in float64, input errors, a checkpoint round trip, the
cache of the default detector, and a tiny training run above a floor."""

from __future__ import annotations

import numpy as np
import pytest

from minivl import functional as F
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.detector import Detector, DetectorConfig, pooling_matrix
from minivl.recipes import detector as recipe
from minivl.tensor import Tensor, no_grad
from minivl.testing import gradcheck

TINY = DetectorConfig(image_size=16, width=4, dim=8, blocks=1, n_classes=5)


def images(b=2, s=16, seed=0):
    return np.random.default_rng(seed).standard_normal((b, 3, s, s)).astype(np.float32)


def hand_roi_mean(fmap, box, image_size):
    """Mean of the cells of ``fmap (D, g, g)`` whose pixel centres lie in ``box``; if none,
    the cell under the box's centre."""
    D, g, _ = fmap.shape
    stride = image_size / g
    x1, y1, x2, y2 = box
    cells = [(i, j) for i in range(g) for j in range(g)
             if x1 <= (j + 0.5) * stride < x2 and y1 <= (i + 0.5) * stride < y2]
    if not cells:  # the column / row under the centre, each on its own axis
        cols = [j for j in range(g) if x1 <= (j + 0.5) * stride < x2] or \
            [min(int((x1 + x2) / 2 // stride), g - 1)]
        rows = [i for i in range(g) if y1 <= (i + 0.5) * stride < y2] or \
            [min(int((y1 + y2) / 2 // stride), g - 1)]
        cells = [(i, j) for i in rows for j in cols]
    return np.mean([fmap[:, i, j] for i, j in cells], axis=0)


def test_shapes_of_every_output():
    model = Detector(TINY)
    boxes = np.array([[[0, 0, 8, 8], [4, 2, 14, 9], [0, 0, 0, 0]]] * 2)
    mask = np.array([[True, True, False], [True, False, False]])
    assert model.features(images()).shape == (2, 8, 8, 8)
    feats = model.region_features(images(), boxes, mask)
    assert feats.shape == (2, 3, 8)
    assert np.all(feats.numpy()[~mask] == 0)  # padded boxes pool nothing
    assert model(images(), boxes, mask).shape == (2, 3, 5)


def test_roi_pool_is_the_mean_of_the_cells_inside_each_box():
    rng = np.random.default_rng(1)
    g, S = 8, 16
    fmap = rng.standard_normal((2, 6, g, g))
    boxes = np.array([[[0, 0, 16, 16], [3, 5, 9, 13], [6, 6, 7, 7]],  # whole, edges on centres, 1 px holding no centre
                      [[10.3, 1.2, 15.9, 4.4], [7, 7, 8, 15], [0, 0, 0, 0]]])  # jittered, thin, padding
    mask = np.array([[True, True, True], [True, True, False]])
    model = Detector(TINY)
    pooled = model.pool(Tensor(fmap), boxes, mask).numpy()  # (2, 3, 6)
    for b in range(2):
        for r in range(3):
            expected = hand_roi_mean(fmap[b], boxes[b, r], S) if mask[b, r] else np.zeros(6)
            np.testing.assert_allclose(pooled[b, r], expected, rtol=1e-6, atol=1e-12, err_msg=f"{b}, {r}")
    weights = pooling_matrix(boxes, mask, S, g)
    np.testing.assert_allclose(weights.sum(-1), mask.astype(float), rtol=1e-6)


def test_roi_pool_gradient_float64():
    rng = np.random.default_rng(2)
    fmap = Tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    boxes = np.array([[[0, 0, 8, 8], [3, 1, 16, 7]], [[4, 4, 12, 16], [0, 0, 0, 0]]])
    mask = np.array([[True, True], [True, False]])
    model = Detector(TINY)
    assert gradcheck(lambda f: model.pool(f, boxes, mask), fmap)


def test_the_gradient_reaches_the_backbone():
    model = Detector(TINY)
    boxes, labels = np.array([[[1, 1, 9, 9]], [[6, 4, 15, 12]]]), np.array([[3], [1]])
    F.cross_entropy(model(images(), boxes), labels).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad).sum() > 0, name


def test_bad_inputs_name_the_argument():
    model = Detector(TINY)
    boxes = np.zeros((2, 1, 4))
    with pytest.raises(ValueError, match="images"):
        model(images(s=8), boxes)
    with pytest.raises(ValueError, match="boxes"):
        model(images(), np.zeros((3, 1, 4)))
    with pytest.raises(ValueError, match="box_mask"):
        model(images(), boxes, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="even"):
        Detector(TINY, image_size=17)


def test_checkpoint_round_trip(tmp_path):
    model = Detector(TINY)
    save_checkpoint(model, tmp_path / "d.safetensors")
    again = load_checkpoint(Detector, tmp_path / "d.safetensors")
    boxes = np.array([[[1, 1, 9, 9]], [[6, 4, 15, 12]]])
    with no_grad():
        np.testing.assert_array_equal(again(images(), boxes).numpy(), model(images(), boxes).numpy())
    assert again.config == model.config


TRAIN = dict(steps=80, batch_size=16, lr=1e-2, n_train=200, n_test=60, max_objects=2, image_size=16,
             eval_every=0, progress=False)


def test_a_tiny_detector_learns_colour_and_beats_chance():
    result = recipe.train_detector(DetectorConfig(image_size=16, width=8, dim=16, blocks=1), **TRAIN)
    m = result["metrics"]
    assert m["test"]["regions"] > 60
    assert m["test"]["colour_accuracy"] > 0.8  # colour is a mean of pixels: learnt first
    assert m["test"]["accuracy"] > 3 * m["chance"]
    assert m["test"]["accuracy"] > m["test_accuracy_start"] + 0.05


def test_default_detector_is_trained_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVL_CACHE", str(tmp_path))
    monkeypatch.setattr(recipe, "PUBLISHED", tmp_path / "none.safetensors")
    tiny = {**{k: TRAIN[k] for k in recipe.DEFAULTS if k in TRAIN}, "steps": 3}
    monkeypatch.setattr(recipe, "DEFAULTS", {**recipe.DEFAULTS, **tiny})
    monkeypatch.setattr(recipe, "DEFAULT_CONFIG", DetectorConfig(image_size=16, width=4, dim=8, blocks=1))
    first = recipe.default_detector()
    path = recipe.default_path()
    assert path.exists() and path.parent == tmp_path

    def no_training(*args, **kwargs):
        raise AssertionError("the cached detector should have been read")

    monkeypatch.setattr(recipe, "train_detector", no_training)
    again = recipe.default_detector()
    for name, value in first.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value, err_msg=name)
    monkeypatch.setattr(recipe, "DEFAULTS", {**recipe.DEFAULTS, "steps": 4})  # another recipe, another file
    assert recipe.default_path() != path and not recipe.default_path().exists()


def test_a_published_checkpoint_is_used_only_for_todays_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe, "PUBLISHED", tmp_path / "published.safetensors")
    model = Detector(recipe.DEFAULT_CONFIG)
    recipe.save_default(model, recipe.PUBLISHED, test_accuracy=0.5)
    monkeypatch.setattr(recipe, "train_detector", lambda *a, **k: pytest.fail("should not train"))
    loaded = recipe.default_detector()
    np.testing.assert_array_equal(loaded.classifier.weight.data, model.classifier.weight.data)
    monkeypatch.setattr(recipe, "DEFAULTS", {**recipe.DEFAULTS, "lr": 0.123})  # the recipe changed
    with pytest.raises(pytest.fail.Exception):
        recipe.default_detector()


def test_the_command_writes_results_and_leaves_the_default_alone(tmp_path, monkeypatch):
    import json

    from minivl.cli import main

    monkeypatch.setenv("MINIVL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe, "DEFAULTS", {**recipe.DEFAULTS, **{k: TRAIN[k] for k in recipe.DEFAULTS if k in TRAIN}})
    monkeypatch.setattr(recipe, "DEFAULT_CONFIG", DetectorConfig(image_size=16, width=4, dim=8, blocks=1))
    import minivl.commands.detector as command

    monkeypatch.setattr(command, "DEFAULTS", recipe.DEFAULTS)
    monkeypatch.setattr(command, "DEFAULT_CONFIG", recipe.DEFAULT_CONFIG)
    out = tmp_path / "d.json"
    assert main(["detector", "train", "--steps", "2", "--seeds", "0", "1", "--results", str(out), "--quiet"]) == 0
    runs = json.loads(out.read_text())["results"]["runs"]
    assert set(runs) == {"seed0", "seed1"} and all(0 <= r["test"]["accuracy"] <= 1 for r in runs.values())
    assert not (tmp_path / "d.safetensors").exists()  # 2 steps is not the default recipe: nothing published
    assert not recipe.default_path().exists()
