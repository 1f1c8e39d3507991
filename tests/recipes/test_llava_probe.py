"""The LLaVA diagnosis (minivl/recipes/llava_probe.py): cells are labelled where the
objects are, the probe learns what is linearly there and nothing that is not, and
the answer balance is a distribution over each type's answers."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.data.shapes import Scene, ShapeObject
from minivl.recipes.llava_probe import answer_balance, cell_labels, class_counts, ridge_probe


def test_cell_labels_by_hand():
    # 48 px, cells of 16 px: a box centred at (40, 8) is the top right cell (row 0, col 2 -> 2),
    # one centred at (8, 24) the middle left (row 1, col 0 -> 3)
    scene = Scene(48, (ShapeObject(shape=4, colour=2, size=1, box=(33, 1, 47, 15)),
                       ShapeObject(shape=0, colour=5, size=0, box=(4, 20, 12, 28))))
    labels = cell_labels([scene])[0]
    assert labels[2].tolist() == [1, 2, 4, 1]
    assert labels[3].tolist() == [1, 5, 0, 0]
    empty = [c for c in range(9) if c not in (2, 3)]
    assert (labels[empty, 0] == 0).all() and (labels[empty, 1:] == -1).all()
    counts = class_counts([scene, scene])
    assert counts.sum() == 4 and counts[0, scene.objects[0].class_id] == 1


def test_probe_reads_what_is_linear_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)) + 5.0  # an offset: the bias term matters
    y = (x[:, 0] - 5.0 > 0.3 * (x[:, 1] - 5.0)).astype(int) + 2 * (x[:, 2] > 5.0)  # 4 classes, linear
    assert ridge_probe(x[:400], y[:400], x[400:], y[400:], lam=1e-4) > 0.9
    noise = rng.integers(0, 2, 600)
    assert ridge_probe(x[:400], noise[:400], x[400:], noise[400:]) < 0.65
    with pytest.raises(ValueError, match="as many rows"):
        ridge_probe(x[:400], y[:300], x[400:], y[400:])


def test_answer_balance_is_a_distribution_over_each_types_answers():
    from minivl.data.llava_data import llava_scenes

    scenes, _ = llava_scenes(30, 7)
    out = answer_balance(scenes, n_per_type=20, seed=0)
    assert set(out["exist"]["answers"]) <= {"yes", "no"} and set(out["relation"]["answers"]) <= {"yes", "no"}
    for v in out.values():
        assert sum(v["answers"].values()) == pytest.approx(1.0)
        assert v["majority_share"] == max(v["answers"].values()) >= 1 / len(v["answers"])
