"""scikit-learn's digits: shapes, labels, splits, captions and resizing
(nearest against integer repetition, bilinear against exact linear ramps and
PyTorch's interpolate)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.data import DIGIT_NAMES, load_digits, resize


def test_full_set_matches_sklearn():
    from sklearn.datasets import load_digits as sk

    raw = sk()
    d = load_digits()
    assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.labels, raw.target)
    np.testing.assert_array_equal(d.images, np.round(raw.images * 255 / 16).astype(np.uint8))
    assert d.names == DIGIT_NAMES and len(d) == 1797


def test_splits_partition_the_data_and_are_seeded():
    parts = {s: load_digits(s, seed=1) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 1797
    assert len(parts["val"]) == len(parts["test"]) == round(0.1 * 1797)
    all_images = np.concatenate([p.images.reshape(len(p), -1) for p in parts.values()])
    full = load_digits().images.reshape(1797, -1)
    # same multiset of images: sort rows lexicographically and compare
    np.testing.assert_array_equal(np.unique(all_images, axis=0), np.unique(full, axis=0))
    np.testing.assert_array_equal(load_digits("val", seed=1).labels, parts["val"].labels)
    assert not np.array_equal(load_digits("val", seed=2).labels, parts["val"].labels)
    assert set(parts["train"].labels.tolist()) == set(range(10))


def test_upscaled_rgb_and_captions():
    d = load_digits("test", size=32, interpolation="nearest", rgb=True)
    assert d.images.shape == (len(d), 32, 32, 3)
    small = load_digits("test")
    np.testing.assert_array_equal(
        d.images[..., 0], np.kron(small.images, np.ones((4, 4), np.uint8))
    )
    np.testing.assert_array_equal(d.images[..., 0], d.images[..., 2])
    captions = d.captions()
    assert captions[0] == f"a photo of the digit {DIGIT_NAMES[d.labels[0]]}."
    assert d.captions("the number {}.")[1] == f"the number {DIGIT_NAMES[d.labels[1]]}."


@settings(deadline=None)
@given(
    h=st.integers(2, 9), w=st.integers(2, 9), size=st.integers(1, 20),
    a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(-3, 3),
)  # fmt: skip
def test_bilinear_reproduces_a_linear_ramp_inside_the_image(h, w, size, a, b, c):
    ys, xs = np.mgrid[0:h, 0:w]
    image = (a * ys + b * xs + c)[None]  # (1, h, w)
    out = resize(image, size, "bilinear")[0]
    # output pixel i samples input coordinate (i + 0.5) * n_in / size - 0.5, clamped
    y = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    x = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    np.testing.assert_allclose(out, a * y[:, None] + b * x[None, :] + c, atol=1e-9)


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [5, 8, 13, 32])
def test_resize_matches_torch(mode, size):
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(0).random((3, 8, 8))
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(images)[:, None], size=(size, size), mode=mode, **kwargs
    )[:, 0].numpy()
    np.testing.assert_allclose(resize(images, size, mode), expected, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
    with pytest.raises(ValueError, match="interpolation"):
        load_digits(size=16, interpolation="cubic")
    with pytest.raises(ValueError, match="images"):
        resize(np.zeros((8, 8)), 16)
    with pytest.raises(ValueError, match="fractions"):
        load_digits("train", fractions=(0.5, 0.5, 0.5))
