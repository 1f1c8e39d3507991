"""Every checker passes minivl's own answer and a differently written correct
solution, and rejects each planted typical mistake with that mistake's hint."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.exercises import EXERCISES, check, get

NAMES = list(EXERCISES)
MISTAKES = [(name, m) for name, ex in EXERCISES.items() for m in ex.mistakes]


def test_there_are_the_exercises_the_issue_asks_for():
    asked = {"softmax", "softmax_backward", "layer_norm_backward", "attention", "split_heads", "merge_heads",
             "causal_mask", "kv_cache_step", "bpe_merge", "bpe_train", "patchify", "bert_masking", "info_nce",
             "zero_shot", "co_attention", "location_features", "gumbel_softmax", "dvae_kl", "llava_labels",
             "flash_attention"}
    assert asked <= set(EXERCISES)
    for ex in EXERCISES.values():
        assert len(ex.mistakes) >= 2, f"{ex.name} plants fewer than two mistakes"
        assert ex.alternative is not None, f"{ex.name} has no differently written solution"
        assert f"def {ex.name}(" in ex.stub and "raise NotImplementedError" in ex.stub


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name):
    report = check(name, get(name).reference, max_examples=30, verbose=False)
    assert report.passed, report.message
    assert report.message.startswith(f"PASS {name}")


@pytest.mark.parametrize("name", NAMES)
def test_a_differently_written_solution_passes(name):
    report = check(name, get(name).alternative, max_examples=30, verbose=False)
    assert report.passed, report.message


@pytest.mark.parametrize("name,mistake", MISTAKES, ids=[f"{n}-{m.name}" for n, m in MISTAKES])
def test_planted_mistake_is_rejected_with_its_hint(name, mistake):
    report = check(name, mistake.fn, verbose=False)
    assert not report.passed, f"{name} accepts the mistake {mistake.name!r}"
    assert mistake.hint in report.message, report.message


def test_failure_shows_smallest_input_expected_got_error_and_hint():
    def no_max(x):
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)

    msg = check("softmax", no_max, verbose=False).message
    assert "smallest failing input" in msg and "expected" in msg and "got" in msg
    assert "hint (no max-subtraction)" in msg
    # hypothesis shrank it to a single entry
    assert "x = float32 array (1,)" in msg or "x = float64 array (1,)" in msg


def test_wrong_value_reports_the_relative_error_and_first_differences():
    msg = check("softmax_backward", lambda y, dy: y * dy, verbose=False).message
    assert "relative error" in msg and "first differing entries" in msg and "at (" in msg


def test_success_says_what_was_verified(capsys):
    report = check("causal_mask", get("causal_mask").reference)
    out = capsys.readouterr().out
    assert report and "inputs agree with minivl's reference" in out and "every output exactly equal" in out
    assert "minivl's own version: kernels/reference.py::attention_mask" in out


@pytest.mark.parametrize("fn,expected", [
    (lambda x, axis: x, "must accept (x)"),
    ("not a function", "needs a function"),
    (lambda x: x[..., :0], "has shape"),
    (lambda x: (x * 0 + 1).astype(np.float16), "has dtype"),
    (lambda x: x.tolist(), "should be a NumPy array"),
    (lambda x: x * np.nan, "NaN"),
    (lambda x: 1 / 0, "raised ZeroDivisionError: division by zero"),
], ids=["signature", "not-callable", "shape", "dtype", "type", "nan", "exception"])
def test_student_errors_become_messages_not_tracebacks(fn, expected):
    report = check("softmax", fn, verbose=False)
    assert not report.passed
    assert expected in report.message, report.message
    assert "Traceback" not in report.message


def test_float64_scalar_promotion_is_explained():
    def promotes(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True)) * np.float64(1.0)
        return e / e.sum(axis=-1, keepdims=True)

    msg = check("softmax", promotes, verbose=False).message
    assert "dtype float64, expected float32" in msg and "math.sqrt" in msg


def test_a_stub_reports_not_written():
    ns = {}
    exec(get("attention").stub, {"np": np}, ns)
    report = check("attention", ns["attention"], verbose=False)
    assert not report.passed and "NotImplementedError" in report.message
    assert "Traceback" not in report.message


def test_float_success_reports_worst_error_shapes_and_dtypes():
    msg = check("attention", get("attention").alternative, verbose=False).message  # a loop: rounding differs
    assert "worst relative error" in msg and "shapes included (dtypes float32, float64): q (" in msg


def test_statistical_checks_state_their_confidence():
    report = check("bert_masking", get("bert_masking").reference, verbose=False)
    assert report.passed and "standard errors" in report.message


def test_unknown_exercise_lists_the_names():
    with pytest.raises(ValueError, match="there are: softmax"):
        get("sofmax")
