"""Can it be answered blind? For every shapes-world task, text-only baselines
(``minivl/data/blind.py``: majority answer per text, bag-of-words-and-bigrams
logistic regression, and for multiple choice a per-option scorer that sees
overlaps, edit distances and number ranks) are fitted on the i.i.d. "train"
part's items and scored on the "test" part's. None may beat chance by more
than the task's tolerance.

Chance, per task (a reader who knows the question type but not the image):
- vqa: the mean over items of 1 / (answers its type allows): yes/no 1/2,
  colour and shape 1/6, size 1/2, count 1/(max_objects + 1) = 1/4;
- nlvr, nlvr_order (the label guessed from the item's position), foil
  (true caption or foil?), retrieval (positive or hard negative?): 1/2;
- mc_answer (Q->A), mc_rationale (QA->R): 1/4;
- dialog: per turn, 1 / (answers of its type), with the caption and the
  history in view;
- refexp: which object is meant, 1 / (objects in the scene), averaged;
- four_way: 1/2, not 1/4: the true caption appears twice by design.

Tolerance: 3 points for tasks with ~3,000 or more test items (a standard
error of at most 0.9 points, so more than 3 standard errors), 4 points for
multiple choice (~1,100 items, SE 1.3 points); the sample-size check below
keeps that true. Question types and statement kinds with at least 300 test
items are checked too, at max(tolerance, 3.5 standard errors).
"""

from __future__ import annotations

import math

import pytest

from minivl.data.blind import TASKS, blind_views, score_task

N_SCENES = 3000
TOLERANCE = {"mc_answer": 0.04, "mc_rationale": 0.04}
DEFAULT_TOLERANCE = 0.03
MIN_GROUP = 300


def _standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_text_only_baselines_stay_at_chance(task):
    scores = score_task(*blind_views(task, N_SCENES, seed=0), task=task)
    chance, n = scores["chance"], scores["n_test"]["all"]
    tolerance = TOLERANCE.get(task, DEFAULT_TOLERANCE)
    assert tolerance >= 3 * _standard_error(chance["all"], n), (task, n)  # enough items
    baselines = {k: v for k, v in scores.items() if k not in ("chance", "n_test")}
    assert baselines, task
    for name, accuracy in baselines.items():
        assert accuracy["all"] <= chance["all"] + tolerance, (task, name, accuracy, chance)


@pytest.mark.parametrize("task", ["vqa", "nlvr", "dialog"])
def test_no_question_type_or_statement_kind_is_answerable_blind(task):
    train, test = blind_views(task, N_SCENES, seed=1)
    scores = score_task(train, test, task=task)
    sizes = {g: test.groups.count(g) for g in set(test.groups)}
    checked = 0
    for group, n in sizes.items():
        if n < MIN_GROUP:
            continue
        c = scores["chance"][group]
        tolerance = max(DEFAULT_TOLERANCE, 3.5 * _standard_error(c, n))
        for name in ("majority", "bow"):
            assert scores[name][group] <= c + tolerance, (task, group, name, scores[name][group], c)
        checked += 1
    assert checked >= 2, sizes


def test_labels_are_balanced_per_question_type_and_statement_kind():
    _, vqa = blind_views("vqa", 2000, seed=2)
    for qtype in ("exist", "relation", "size", "count"):
        answers = [y for y, g in zip(vqa.labels, vqa.groups) if g == qtype]
        counts = [answers.count(a) for a in set(answers)]
        assert max(counts) - min(counts) <= 0.1 * len(answers) + 10, (qtype, counts)
        if qtype == "count":  # level over zero .. three, zero included
            assert sorted(set(answers)) == ["one", "three", "two", "zero"]
    _, nlvr = blind_views("nlvr", 1000, seed=2)
    for kind in set(nlvr.groups):
        labels = [y for y, g in zip(nlvr.labels, nlvr.groups) if g == kind]
        assert abs(labels.count("True") - labels.count("False")) <= 1, kind
