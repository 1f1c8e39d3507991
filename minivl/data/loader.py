"""Batching: seeded shuffling, train/val/test splits, padding token-id lists.

    loader = DataLoader({"images": images, "tokens": token_lists}, batch_size=64,
                        pad={"tokens": 0}, seed=0)
    for batch in loader:           # one epoch, a fresh seeded order each epoch
        batch["images"]            # (B, H, W, 3)
        batch["tokens"]            # (B, T) int64, padded with 0
        batch["tokens_mask"]       # (B, T) bool, True for a real token

Each field is a NumPy array or a list of equal length N. The order of epoch
``e`` is ``default_rng([seed, e]).permutation(N)``, so a run is reproducible
and any epoch can be replayed on its own (``set_epoch``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def split_indices(n: int, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded random partition of ``range(n)`` into "train", "val" and "test" index arrays.

    Val and test get ``round(fraction * n)`` indices each and train the rest,
    so every index lands in exactly one split.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    n_train = n - n_val - n_test
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def pad_sequences(
    sequences, pad_id: int = 0, max_len: int | None = None, truncate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Token-id lists of varying length -> ``ids (B, T)`` int64 and ``mask (B, T)`` bool.

    ``mask`` is True at real tokens and False at padding (added on the right).
    T is the longest sequence, or ``max_len``; a longer sequence is an error
    unless ``truncate`` (then it is cut to ``max_len``).
    """
    sequences = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    if not sequences:
        raise ValueError("pad_sequences needs at least one sequence")
    longest = max(len(s) for s in sequences)
    t = longest if max_len is None else max_len
    if longest > t and not truncate:
        raise ValueError(f"a sequence has {longest} tokens, more than max_len={max_len}")
    ids = np.full((len(sequences), t), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(sequences), t), dtype=bool)  # (B, T)
    for row, seq in enumerate(sequences):
        seq = seq[:t]
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = True
    return ids, mask


def _take(values, index: np.ndarray):
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index]


class DataLoader:
    """Iterate over mini-batches of a dict of equal-length fields.

    - ``shuffle``: a new seeded order every epoch (else the stored order);
    - ``drop_last``: skip a final batch smaller than ``batch_size``;
    - ``pad``: ``{field: pad_id}`` for fields holding token-id lists; the batch
      gets ``field`` ``(B, T)`` and ``field + "_mask"`` ``(B, T)``;
    - ``augment``: ``{field: fn(array, rng) -> array}``, e.g. random flips
      of images (see augment.py), drawn from the epoch's generator.
    """

    def __init__(
        self,
        data: dict,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        pad: dict[str, int] | None = None,
        augment: dict[str, Callable] | None = None,
    ):
        if not isinstance(data, dict) or not data:
            raise ValueError("data must be a non-empty dict of equal-length arrays or lists")
        lengths = {key: len(values) for key, values in data.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all fields must have the same length, got {lengths}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        for option in (pad or {}), (augment or {}):
            unknown = set(option) - set(data)
            if unknown:
                raise ValueError(f"pad/augment name fields not in data: {sorted(unknown)}")
        self.data, self.batch_size = data, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.pad, self.augment = dict(pad or {}), dict(augment or {})
        self.n = next(iter(lengths.values()))
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = {}
            for key, values in self.data.items():
                values = _take(values, index)
                if key in self.pad:
                    batch[key], batch[key + "_mask"] = pad_sequences(values, self.pad[key])
                else:
                    batch[key] = values
                if key in self.augment:
                    batch[key] = self.augment[key](batch[key], rng)
            yield batch
