"""What limits LLaVA's short answers: does the frozen eye see, and what does a
blind guess score? (lecture S29, S36; a diagnosis, not part of the recipe).

* ``probe_eye``: linear probes on the frozen CLIP's penultimate-layer patch
  tokens (the features LLaVA's projector reads). The pictures' objects sit in
  a 3 x 3 grid of cells, one per patch token, so each cell's occupancy,
  colour, shape and size is probed from its own token ``(Dv,)``, and the
  number of objects of each (colour, shape) from all nine ``(9 * Dv,)``.
  The probe is a ridge-regression classifier (least squares on one-hot
  targets, argmax), fitted on training scenes, scored on held-out ones.
* ``answer_balance``: on the evaluation's own held-out questions
  (``minivl/recipes/llava.py::evaluate`` draws them the same way), how often
  each answer is right: what always answering "no" or "zero" would score.

``minivl llava probe --out results/llava_probe.json`` writes both.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from minivl.data.llava_eval import EVAL_TYPES
from minivl.data.shapes import COLOURS, SHAPES
from minivl.data.vqa import ask
from minivl.metrics import ridge_predict

CELL_FIELDS = ("occupied", "colour", "shape", "size")


def cell_labels(scenes, grid=3) -> np.ndarray:
    """``(n, grid * grid, 4)``: per cell (row-major) occupied (0/1), colour, shape, size (-1 if empty)."""
    out = np.full((len(scenes), grid * grid, 4), -1, np.int64)
    out[..., 0] = 0
    for n, s in enumerate(scenes):
        for o in s.objects:
            x, y = o.centre
            cell = min(int(grid * y / s.image_size), grid - 1) * grid + min(int(grid * x / s.image_size), grid - 1)
            out[n, cell] = (1, o.colour, o.shape, o.size)
    return out


def class_counts(scenes) -> np.ndarray:
    """``(n, 36)``: how many objects of each (colour, shape) class a scene holds."""
    out = np.zeros((len(scenes), len(SHAPES) * len(COLOURS)), np.int64)
    for n, s in enumerate(scenes):
        for o in s.objects:
            out[n, o.class_id] += 1
    return out


def ridge_probe(x_train, y_train, x_test, y_test, lam=1e-2) -> float:
    """Held-out accuracy of a least-squares classifier (``minivl.metrics.ridge_predict`` on one-hot
    targets)."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"x and y must have as many rows: {x_train.shape} / {np.shape(y_train)}, "
                         f"{x_test.shape} / {np.shape(y_test)}")
    classes = np.unique(y_train)
    targets = (np.asarray(y_train)[:, None] == classes[None]).astype(np.float64)  # (n, K) one-hot
    scores = ridge_predict(x_train, targets, x_test, lam)  # (m, K)
    return float(np.mean(classes[scores.argmax(1)] == np.asarray(y_test)))


def probe_eye(train_features, train_scenes, test_features, test_scenes) -> dict:
    """Per-cell probes from the cell's own patch token, class counts from all nine."""
    ytr, yte = cell_labels(train_scenes), cell_labels(test_scenes)
    out = {}
    for f, field in enumerate(CELL_FIELDS):
        accs = []
        for c in range(ytr.shape[1]):
            mtr, mte = (ytr[:, c, f] >= 0), (yte[:, c, f] >= 0)  # colour, shape, size: occupied cells
            accs.append(ridge_probe(train_features[mtr, c], ytr[mtr, c, f], test_features[mte, c], yte[mte, c, f]))
        out[f"cell_{field}"] = float(np.mean(accs))
        out[f"cell_{field}_worst_cell"] = float(np.min(accs))
    ntr, nte = class_counts(train_scenes), class_counts(test_scenes)
    flat = lambda x: x.reshape(len(x), -1)
    accs, zero = [], []
    for k in range(ntr.shape[1]):
        accs.append(ridge_probe(flat(train_features), ntr[:, k], flat(test_features), nte[:, k]))
        zero.append(float(np.mean(nte[:, k] == 0)))
    out["class_count"] = float(np.mean(accs))
    out["class_count_always_zero"] = float(np.mean(zero))
    return out


def answer_balance(test_scenes, n_per_type=60, seed=0) -> dict:
    """Per question type: the answers' shares and the majority answer's, on ``evaluate``'s questions."""
    rng = np.random.default_rng([seed, 36])
    out = {}
    for qtype in EVAL_TYPES:
        answers = []
        while len(answers) < n_per_type:
            q = ask(test_scenes[int(rng.integers(len(test_scenes)))], qtype, rng)
            if q is not None:
                answers.append(q.answer)
        counts = Counter(answers)
        out[qtype] = {"answers": {a: n / n_per_type for a, n in counts.most_common()},
                      "majority": counts.most_common(1)[0][0],
                      "majority_share": counts.most_common(1)[0][1] / n_per_type}
    return out
