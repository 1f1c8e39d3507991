"""Batching: every index once per epoch, seeded orders, padding masks, splits,
augmentations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.data import (
    DataLoader,
    compose,
    pad_sequences,
    random_flip,
    random_shift,
    split_indices,
)


@settings(deadline=None)
@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 17),
    drop_last=st.booleans(),
    seed=st.integers(0, 99),
)
def test_each_epoch_covers_every_index_exactly_once(n, batch_size, drop_last, seed):
    loader = DataLoader(
        {"i": np.arange(n), "s": [str(i) for i in range(n)]},
        batch_size,
        drop_last=drop_last,
        seed=seed,
    )
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        seen = np.concatenate([b["i"] for b in batches]) if batches else np.array([], int)
        assert all(len(b["i"]) == batch_size for b in batches[:-1])
        for b in batches:
            assert b["s"] == [str(i) for i in b["i"]]  # fields stay aligned
        if drop_last:
            assert len(seen) == n - n % batch_size and len(set(seen.tolist())) == len(seen)
        else:
            assert sorted(seen.tolist()) == list(range(n))
        epochs.append(seen)
    replay = DataLoader({"i": np.arange(n)}, batch_size, drop_last=drop_last, seed=seed)
    replay.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate([b["i"] for b in replay] or [[]]), epochs[1])


def test_shuffle_changes_order_between_epochs_and_off_keeps_it():
    loader = DataLoader({"i": np.arange(100)}, 100, seed=0)
    first, second = next(iter(loader))["i"], next(iter(loader))["i"]
    assert not np.array_equal(first, second)
    plain = DataLoader({"i": np.arange(10)}, 4, shuffle=False)
    assert [b["i"].tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@settings(deadline=None)
@given(lengths=st.lists(st.integers(0, 9), min_size=1, max_size=8), pad_id=st.integers(-1, 5))
def test_pad_sequences_mask_is_true_exactly_on_real_tokens(lengths, pad_id):
    seqs = [list(range(100, 100 + k)) for k in lengths]
    ids, mask = pad_sequences(seqs, pad_id=pad_id)
    assert ids.shape == mask.shape == (len(seqs), max(lengths)) and mask.dtype == bool
    for row, seq in enumerate(seqs):
        assert mask[row].tolist() == [True] * len(seq) + [False] * (max(lengths) - len(seq))
        assert ids[row, : len(seq)].tolist() == seq
        assert (ids[row, len(seq) :] == pad_id).all()


def test_pad_sequences_max_len_truncate_and_loader_padding():
    ids, mask = pad_sequences([[1, 2, 3], [4]], max_len=5)
    assert ids.tolist() == [[1, 2, 3, 0, 0], [4, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([[1, 2, 3]], max_len=2)
    ids, mask = pad_sequences([[1, 2, 3]], max_len=2, truncate=True)
    assert ids.tolist() == [[1, 2]] and mask.all()
    loader = DataLoader({"tokens": [[5], [6, 7], [8, 9, 10]]}, 3, shuffle=False, pad={"tokens": 0})
    batch = next(iter(loader))
    assert batch["tokens"].tolist() == [[5, 0, 0], [6, 7, 0], [8, 9, 10]]
    assert batch["tokens_mask"].sum(axis=1).tolist() == [1, 2, 3]


@settings(deadline=None)
@given(n=st.integers(1, 500), seed=st.integers(0, 99))
def test_split_indices_partition(n, seed):
    parts = split_indices(n, (0.7, 0.2, 0.1), seed)
    joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert sorted(joined.tolist()) == list(range(n))
    assert len(parts["val"]) == round(0.2 * n) and len(parts["test"]) == round(0.1 * n)


def test_random_flip_and_shift():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(64, 8, 8, 3), dtype=np.uint8)
    flipped = random_flip(images, np.random.default_rng(1), p=0.5)
    same = [np.array_equal(a, b) for a, b in zip(images, flipped)]
    mirrored = [np.array_equal(a[:, ::-1], b) for a, b in zip(images, flipped)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54
    shifted = random_shift(images, np.random.default_rng(2), max_shift=2)
    assert shifted.shape == images.shape
    for a, b in zip(images, shifted):  # b is a moved by some (dy, dx), zero filled
        found = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
            if np.array_equal(b, _moved(a, dy, dx))
        ]  # fmt: skip
        assert found
    np.testing.assert_array_equal(random_shift(images, rng, max_shift=0), images)
    both = compose(random_flip, random_shift)(images[..., 0], rng)  # (B, H, W) works too
    assert both.shape == (64, 8, 8)


def _moved(image, dy, dx):
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_loader_applies_augmentation_and_rejects_bad_input():
    images = np.ones((6, 4, 4), dtype=np.uint8)
    loader = DataLoader({"images": images}, 3, augment={"images": lambda x, rng: x * 2})
    assert all((b["images"] == 2).all() for b in loader)
    with pytest.raises(ValueError, match="same length"):
        DataLoader({"a": np.arange(3), "b": np.arange(4)}, 2)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader({"a": np.arange(3)}, 0)
    with pytest.raises(ValueError, match="not in data"):
        DataLoader({"a": np.arange(3)}, 2, pad={"tokens": 0})
