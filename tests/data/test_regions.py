"""Region tokens (``minivl/data/regions.py``, S04-S05): shapes and padding, the
5-d location against a hand computation, the [IMG] token as the mean of the
valid regions, features and class distributions equal to the detector's on the
same boxes, the simulated fallback, jitter that stays inside the image, and
input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minivl import functional as F
from minivl.data import ShapesWorld, detector_distributions, render
from minivl.data.regions import (
    N_REGION_CLASSES,
    RegionBatch,
    RegionEncoder,
    jitter_boxes,
    region_class,
)
from minivl.data.shapes import CLASS_NAMES, Scene, ShapeObject
from minivl.models.detector import Detector, DetectorConfig
from minivl.models.vision import preprocess
from minivl.random import manual_seed
from minivl.tensor import no_grad

S = 32


@pytest.fixture(scope="module")
def encoder():
    manual_seed(0)  # the untrained detector's weights must not depend on which tests ran before
    return RegionEncoder(Detector(DetectorConfig(image_size=S, width=4, dim=8, blocks=1)))


@pytest.fixture(scope="module")
def scenes():
    return ShapesWorld(image_size=S, max_objects=3, seed=3).scenes(6)


def test_shapes_dtypes_and_padding(encoder, scenes):
    batch = encoder.encode_scenes(scenes, max_regions=4)
    B, R, D = len(scenes), 4, 8
    assert batch.feats.shape == (B, 1 + R, D) and batch.feats.dtype == np.float32
    assert batch.locs.shape == (B, 1 + R, 5) and batch.mask.shape == (B, 1 + R)
    assert batch.boxes.shape == (B, R, 4) and batch.labels.shape == (B, R)
    assert batch.det_probs.shape == (B, 1 + R, N_REGION_CLASSES) and batch.source == "trained"
    counts = np.array([len(s) for s in scenes])
    np.testing.assert_array_equal(batch.mask.sum(1), 1 + counts)
    for i, scene in enumerate(scenes):
        k = len(scene)
        assert batch.mask[i, 0] and batch.mask[i, 1 : 1 + k].all() and not batch.mask[i, 1 + k :].any()
        np.testing.assert_array_equal(batch.labels[i, :k], scene.class_ids)
        assert (batch.labels[i, k:] == -1).all()
        assert not batch.feats[i, 1 + k :].any() and not batch.locs[i, 1 + k :].any()
        assert not batch.boxes[i, k:].any() and not batch.det_probs[i, 1 + k :].any()
        np.testing.assert_allclose(batch.det_probs[i, 1 : 1 + k].sum(-1), 1, rtol=1e-5)
    assert not batch.det_probs[:, 0].any()  # [IMG] has no class
    assert encoder.encode_scenes(scenes).n_regions == counts.max()  # default: the longest scene


def test_five_d_location_by_hand(encoder):
    scene = Scene(S, (ShapeObject(0, 0, 0, (2, 4, 12, 10)), ShapeObject(1, 2, 1, (20, 0, 32, 30))))
    batch = encoder.encode_scenes([scene])
    expected = [[2 / 32, 4 / 32, 12 / 32, 10 / 32, 10 * 6 / 32**2],
                [20 / 32, 0, 1, 30 / 32, 12 * 30 / 32**2]]
    np.testing.assert_allclose(batch.locs[0, 1:], expected, rtol=1e-6)
    np.testing.assert_array_equal(batch.locs[0, 0], [0, 0, 1, 1, 1])


def test_img_token_is_the_mean_of_the_valid_regions(encoder, scenes):
    batch = encoder.encode_scenes(scenes, max_regions=5)
    for i, scene in enumerate(scenes):
        np.testing.assert_allclose(batch.feats[i, 0], batch.feats[i, 1 : 1 + len(scene)].mean(0),
                                   rtol=1e-5, atol=1e-6)


def test_features_and_distributions_are_the_detectors(encoder, scenes):
    rng = np.random.default_rng(0)
    batch = encoder.encode_scenes(scenes, jitter=0.2, rng=rng)
    assert not np.allclose(batch.boxes[0, 0], scenes[0].boxes[0])  # the boxes did move
    valid = batch.mask[:, 1:]
    with no_grad():
        feats = encoder.detector.region_features(preprocess(render(scenes)), batch.boxes, valid)
        probs = F.softmax(encoder.detector.classifier(feats), axis=-1).numpy()
    standardised = (feats.numpy() - encoder.mean) / encoder.std * valid[..., None]
    np.testing.assert_allclose(batch.feats[:, 1:], standardised, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(batch.det_probs[:, 1:][valid], probs[valid], rtol=1e-5, atol=1e-7)


def test_features_are_standardised(encoder):
    """Raw detector features are all positive and far from centred; the encoder's are,
    per dimension, mean ~0 and std ~1 on fresh scenes (the statistics came from other,
    fixed reference scenes), padding stays zero, and ``standardise=False`` gives the raw ones."""
    fresh = ShapesWorld(image_size=S, max_objects=3, seed=11).scenes(300)
    batch = encoder.encode_scenes(fresh)
    real = batch.feats[:, 1:][batch.mask[:, 1:]]  # (regions, D)
    varying = encoder.std != 1.0
    assert varying.any()
    np.testing.assert_allclose(real.mean(0), 0, atol=0.25)
    np.testing.assert_allclose(real[:, varying].std(0), 1, atol=0.25)
    assert not batch.feats[:, 1:][~batch.mask[:, 1:]].any()
    raw = RegionEncoder(encoder.detector, standardise=False).encode_scenes(fresh)
    assert raw.feats.min() >= 0 and raw.feats[:, 1:][raw.mask[:, 1:]].mean() > 0.1
    np.testing.assert_allclose(batch.feats[:, 1:][batch.mask[:, 1:]],
                               (raw.feats[:, 1:][raw.mask[:, 1:]] - encoder.mean) / encoder.std, rtol=1e-4, atol=1e-5)


def test_simulated_target_is_the_hand_made_detector(encoder, scenes):
    simulated = RegionEncoder(encoder.detector, target="simulated")
    batch = simulated.encode_scenes(scenes, rng=np.random.default_rng(5))
    expected = detector_distributions(scenes, np.random.default_rng(5))
    assert batch.source == "simulated"
    for i, p in enumerate(expected):
        np.testing.assert_allclose(batch.det_probs[i, 1 : 1 + len(p)], p, rtol=1e-6)
    np.testing.assert_allclose(batch.feats, encoder.encode_scenes(scenes).feats, rtol=1e-6)
    with pytest.raises(ValueError, match="scenes"):
        simulated.encode(preprocess(render(scenes[:1])), [scenes[0].boxes])


def test_boxes_without_scenes_have_unknown_labels(encoder, scenes):
    images = preprocess(render(scenes[:2]))
    batch = encoder.encode(images, [scenes[0].boxes, scenes[1].boxes[:1]])
    assert (batch.labels == -1).all()
    np.testing.assert_allclose(batch.feats[0], encoder.encode(images[:1], scenes[:1]).feats[0], rtol=1e-6)
    assert batch.mask[1].sum() == 2


@given(st.lists(st.tuples(st.integers(0, 31), st.integers(0, 31), st.integers(1, 32), st.integers(1, 32)),
                min_size=1, max_size=6),
       st.floats(0, 0.5), st.integers(0, 2**16))
def test_jitter_stays_in_the_image(raw, jitter, seed):
    boxes = np.array([(x, y, min(x + w, S), min(y + h, S)) for x, y, w, h in raw], float)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    out = jitter_boxes(boxes, jitter, S, np.random.default_rng(seed))
    assert out.shape == boxes.shape
    assert (out >= 0).all() and (out <= S).all()
    assert (out[:, 2] - out[:, 0] >= 1 - 1e-5).all() and (out[:, 3] - out[:, 1] >= 1 - 1e-5).all()
    extent = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    assert (np.abs(out - boxes) <= jitter * extent + 1 + 1e-5).all()  # + 1: the one-pixel floor
    np.testing.assert_array_equal(jitter_boxes(boxes, 0.0, S, None), boxes)


def test_region_class_and_names():
    assert region_class("circle", "red") == 0
    assert CLASS_NAMES[region_class("ring", "cyan")] == "cyan ring"
    assert region_class(2, 3) == region_class("triangle", "yellow")
    with pytest.raises(ValueError, match="shape"):
        region_class("hexagon", "red")
    with pytest.raises(ValueError):
        region_class(6, 0)


def test_rows_and_concat(encoder, scenes):
    batch = encoder.encode_scenes(scenes, max_regions=3)
    rows = batch[np.array([4, 1])]
    np.testing.assert_array_equal(rows.feats, batch.feats[[4, 1]])
    joined = RegionBatch.concat([batch[:2], batch[2:]])
    for field in ("feats", "locs", "mask", "boxes", "labels", "det_probs"):
        np.testing.assert_array_equal(getattr(joined, field), getattr(batch, field))
    with pytest.raises(ValueError):
        RegionBatch.concat([batch, encoder.encode_scenes(scenes, max_regions=4)])


def test_bad_inputs(encoder, scenes):
    images = preprocess(render(scenes))
    with pytest.raises(ValueError, match="images"):
        encoder.encode(images[:, :, :16, :16], scenes)
    with pytest.raises(ValueError, match="entries"):
        encoder.encode(images, scenes[:2])
    with pytest.raises(ValueError, match="rng"):
        encoder.encode(images, scenes, jitter=0.1)
    with pytest.raises(ValueError, match="max_regions"):
        encoder.encode(images, scenes, max_regions=1)
    with pytest.raises(ValueError, match="target"):
        RegionEncoder(encoder.detector, target="oracle")


def test_pictures_show_every_box_and_the_location_vector(encoder, scenes):
    from matplotlib.patches import Rectangle

    from minivl.data.boxes import location_features
    from minivl.viz.regions import detections_figure, location_figure, top_classes

    batch = encoder.encode_scenes(scenes[:3])
    fig = detections_figure(render(scenes[:3]), batch, top=1)
    for ax, scene, probs in zip(fig.axes, scenes, batch.det_probs):
        assert sum(isinstance(p, Rectangle) for p in ax.patches) == len(scene)
        names = {t.get_text().rsplit(" ", 1)[0] for t in ax.texts}
        assert {top_classes(p, 1)[0][0] for p in probs[1 : 1 + len(scene)]} <= names
    box = scenes[0].boxes[0]
    bars = location_figure(render(scenes[:1])[0], box).axes[1].patches
    np.testing.assert_allclose([b.get_height() for b in bars], location_features(box[None], S)[0], rtol=1e-6)
