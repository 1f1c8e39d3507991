"""The checker every exercise shares: draw inputs, call the student, compare, explain.

An ``Exercise`` says what to draw (a hypothesis strategy of keyword
arguments), what the right answer is (``reference``, a call into minivl's own
code or a short NumPy transcription of the slide), how close is close enough
(``rtol``, relative to the largest entry of the expected output), and which
typical mistakes to recognise (``mistakes``: a wrong implementation each, with
the hint to show when the student's output equals that mistake's output).

``check(exercise, fn)`` runs the property test with hypothesis (fixed seed,
so every student is graded on the same draws), lets hypothesis shrink a
failure to the smallest failing input, and returns a ``Report`` whose
``message`` shows that input, the expected and received values, the relative
error and a hint. Statistical exercises (random outputs) replace the property
test by ``statistical(fn)``, a fixed-seed test that returns its findings.

Nothing but the student's function is called on the student's side, and
whatever goes wrong there (a wrong signature, an exception, a wrong shape or
dtype, a NaN) becomes a message, never a traceback.

Why one file of ~320 lines: it is the one runner every exercise shares, and
most of it is the wording of failures, which should read as one voice.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings


@dataclass
class Mistake:
    """A typical wrong solution and the hint that explains it."""

    name: str
    hint: str
    fn: Callable


@dataclass
class Exercise:
    name: str  # also the name of the student's function
    slide: str  # the lecture slide it follows, e.g. "S15"
    part: str  # which exercise notebook holds it
    title: str
    stub: str  # the student-facing signature, docstring and NotImplementedError
    reference: Callable
    solution: str  # where minivl does it, shown after a pass
    inputs: object = None  # a hypothesis strategy of dicts (argument name -> value)
    statistical: Callable | None = None  # fn -> (list of (problem, hint), what was verified)
    mistakes: list[Mistake] = field(default_factory=list)
    hint: str = ""  # shown when no known mistake matches
    rtol: dict = field(default_factory=lambda: {np.float64: 1e-6, np.float32: 2e-3})
    exact: bool = False  # integers, booleans, lists: must be equal
    scale: Callable | None = None  # inputs -> the size of the terms the output is made of (see relative_error)
    max_examples: int = 60
    alternative: Callable | None = None  # a correct solution written differently (the checker must accept it)

    @functools.cached_property
    def params(self) -> list[str]:
        """The stub's argument names, in order."""
        ns: dict = {}
        exec(self.stub, {"np": np, "math": math}, ns)  # our own stub text, never the student's
        return list(inspect.signature(ns[self.name]).parameters)


class Failure(Exception):
    """One failing input: what went wrong there and what to show."""

    def __init__(self, kind, lines, inputs=None, got=None):
        super().__init__(kind)
        self.kind, self.lines, self.inputs, self.got = kind, lines, inputs, got


@dataclass
class Report:
    exercise: str
    passed: bool
    message: str
    examples: int = 0
    worst_error: float = 0.0

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return f"<Report {self.exercise}: {'passed' if self.passed else 'failed'}>"

    def as_dict(self):
        return {"exercise": self.exercise, "passed": self.passed, "examples": self.examples,
                "worst_error": self.worst_error, "message": self.message}


# --------------------------------------------------------------------------- showing values


def show(value, limit=40) -> str:
    """A value as a student should see it: small arrays in full, big ones summarised."""
    if isinstance(value, np.ndarray):
        head = f"{value.dtype} array {value.shape}"
        if value.size <= limit:
            body = np.array2string(value, precision=4, separator=", ", threshold=limit)
            return head + " =\n      " + body.replace("\n", "\n      ")
        finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
        rng = f"min {finite.min():.4g}, max {finite.max():.4g}" if finite.size else "no finite entries"
        return f"{head} ({rng})"
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], np.ndarray):
        return "(" + ", ".join(show(v, limit) for v in value) + ")"
    text = repr(value)
    return text if len(text) <= 400 else text[:400] + " ..."


def relative_error(expected, got, scale=0.0) -> float:
    """max |got - expected| / max |expected|: the error relative to the output's scale.

    ``scale`` is a floor for the denominator, for outputs that are small only
    because terms cancel (a layer-norm gradient of two entries is zero up to
    rounding): the error is then measured against the size of those terms.
    """
    e = np.asarray(expected, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    same = (e == g) | (np.isnan(e) & np.isnan(g))  # equal infinities, NaN where a mistake has NaN too
    diff = np.where(same, 0.0, np.abs(g - e))
    finite = np.abs(e[np.isfinite(e)])
    return float(np.max(diff, initial=0.0) / max(np.max(finite, initial=0.0), scale, 1e-30))


def _first_differences(expected, got, tol, n=3):
    e, g = np.atleast_1d(np.asarray(expected, np.float64)), np.atleast_1d(np.asarray(got, np.float64))
    bad = ~((e == g) | (np.abs(g - e) <= tol))
    return [f"      at {tuple(int(i) for i in idx)}: expected {e[idx]:.6g}, got {g[idx]:.6g}"
            for idx in list(zip(*np.nonzero(bad)))[:n]]


# --------------------------------------------------------------------------- comparing


def compare(ex: Exercise, expected, got, label="the output", scale=0.0) -> float:
    """Raise ``Failure`` unless ``got`` matches ``expected``; return the relative error."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            n = f" of {len(got)}" if isinstance(got, (tuple, list)) else ""
            raise Failure("wrong type", [f"{label} should be a tuple of {len(expected)} values, "
                                         f"got {type(got).__name__}{n}"])
        return max(compare(ex, e, g, f"{label}[{i}]", scale) for i, (e, g) in enumerate(zip(expected, got)))
    if not isinstance(expected, np.ndarray):
        if not isinstance(got, type(expected)):
            raise Failure("wrong type", [f"{label} should be a {type(expected).__name__}, got {type(got).__name__}"])
        if got != expected:
            raise Failure("wrong value", [f"{label} differs:", f"    expected {show(expected)}",
                                          f"    got      {show(got)}"])
        return 0.0
    if expected.ndim == 0 and isinstance(got, (int, float)) and not isinstance(got, bool):
        got = np.asarray(got, expected.dtype)  # a plain Python number for a scalar output is fine
    if not isinstance(got, (np.ndarray, np.generic)):
        raise Failure("wrong type", [f"{label} should be a NumPy array {expected.shape}, got {type(got).__name__}"])
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise Failure("wrong shape", [f"{label} has shape {got.shape}, expected {expected.shape}"])
    if got.dtype.kind != expected.dtype.kind or (expected.dtype.kind == "f" and got.dtype != expected.dtype):
        extra = ""
        if expected.dtype == np.float32 and got.dtype == np.float64:
            extra = (" (a NumPy float64 scalar such as np.sqrt(d) promotes a float32 array: "
                     "use math.sqrt, or cast with .astype(x.dtype))")
        raise Failure("wrong dtype", [f"{label} has dtype {got.dtype}, expected {expected.dtype}{extra}"])
    if ex.exact or expected.dtype.kind in "biu":
        if not np.array_equal(got, expected):
            lines = [f"{label} differs:", f"    expected {show(expected)}", f"    got      {show(got)}"]
            raise Failure("wrong value", lines)
        return 0.0
    if np.isnan(got).any() and not np.isnan(expected).any():
        raise Failure("nan", [f"{label} contains NaN where the expected output has none",
                              f"    expected {show(expected)}", f"    got      {show(got)}"])
    err = relative_error(expected, got, scale)
    rtol = ex.rtol[expected.dtype.type]
    if not err <= rtol:
        scale = max(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0), scale, 1e-30)
        lines = [f"{label}: relative error {err:.2e} (max |got - expected| / max |expected|; "
                 f"tolerance {rtol:.0e} for {expected.dtype})",
                 "    first differing entries:", *_first_differences(expected, got, rtol * scale),
                 f"    expected {show(expected)}", f"    got      {show(got)}"]
        raise Failure("wrong value", lines)
    return err


# --------------------------------------------------------------------------- running


def _signature_problem(ex: Exercise, fn) -> str | None:
    if not callable(fn):
        return f"check({ex.name!r}, ...) needs a function, got {type(fn).__name__}"
    try:
        inspect.signature(fn).bind(*ex.params)
    except TypeError as e:
        return f"{ex.name} must accept ({', '.join(ex.params)}), as in the stub: {e}"
    except ValueError:
        return None  # a builtin without a signature: try calling it
    return None


def _call_student(ex: Exercise, fn, inputs):
    args = copy.deepcopy([inputs[p] for p in ex.params])
    try:
        return fn(*args)
    except NotImplementedError:
        raise Failure("not written", [f"{ex.name} raises NotImplementedError: the stub is not filled in yet."]
                      ) from None
    except Exception as e:  # noqa: BLE001 - any error in the student's code becomes a message
        frames = [f for f in traceback.extract_tb(e.__traceback__)[1:]  # the student's lines, not NumPy's
                  if f"{os.sep}numpy{os.sep}" not in f.filename]
        where = [f"    {f.filename.split('/')[-1]}, line {f.lineno}, in {f.name}: {f.line}" for f in frames[-3:]]
        raise Failure("exception", [f"{ex.name} raised {type(e).__name__}: {e}", *where], inputs) from None


def _scale(ex, inputs) -> float:
    return float(ex.scale(**inputs)) if ex.scale is not None else 0.0


def _diagnose(ex: Exercise, failure: Failure) -> list[str]:
    """The hints of every known mistake whose output equals the student's on this input."""
    if failure.inputs is None or failure.kind in ("not written", "exception"):
        return []
    hints = []
    for m in ex.mistakes:
        try:
            with np.errstate(all="ignore"):
                wrong = m.fn(*copy.deepcopy([failure.inputs[p] for p in ex.params]))
                compare(ex, wrong, failure.got, scale=_scale(ex, failure.inputs))
        except Exception:  # noqa: BLE001 - this mistake does not explain the output
            continue
        hints.append(f"hint ({m.name}): {m.hint}")
    return hints


class _Tally:
    def __init__(self):
        self.n, self.worst, self.shapes, self.dtypes = 0, 0.0, set(), set()


def _shapes(inputs) -> str:
    return ", ".join(f"{k} {v.shape}" for k, v in inputs.items() if isinstance(v, np.ndarray))


def _property_test(ex: Exercise, fn, max_examples, tally):
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              verbosity=Verbosity.quiet, report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(ex.inputs)
    def prop(inputs):
        with np.errstate(all="ignore"):
            expected = ex.reference(*copy.deepcopy([inputs[p] for p in ex.params]))
            got = _call_student(ex, fn, inputs)
            try:
                err = compare(ex, expected, got, scale=_scale(ex, inputs))
            except Failure as f:
                f.inputs, f.got = inputs, got
                raise
        tally.n += 1
        tally.worst = max(tally.worst, err)
        tally.shapes.add(_shapes(inputs))
        tally.dtypes.update(str(v.dtype) for v in inputs.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f")

    prop()


def check(ex: Exercise, fn, max_examples=None, verbose=True) -> Report:
    """Grade ``fn`` on exercise ``ex``; print the verdict (if ``verbose``) and return it."""
    report = _grade(ex, fn, max_examples or ex.max_examples)
    if verbose:
        print(report.message)
    return report


def _grade(ex, fn, max_examples) -> Report:
    problem = _signature_problem(ex, fn)
    if problem:
        return Report(ex.name, False, f"FAIL {ex.name}: {problem}")
    if ex.statistical is not None:
        return _grade_statistical(ex, fn)
    tally = _Tally()
    try:
        _property_test(ex, fn, max_examples, tally)
    except Failure as f:
        head = f"FAIL {ex.name} ({ex.slide}, {ex.title})"
        if f.kind == "not written":
            return Report(ex.name, False, f"{head}: {f.lines[0]}")
        lines = [f"{head}: {f.lines[0]}", *f.lines[1:]]
        if f.inputs is not None:
            lines.append(f"  on the smallest failing input hypothesis found (after {tally.n} passing inputs):")
            lines += [f"    {k} = {show(v)}" for k, v in f.inputs.items()]
        hints = _diagnose(ex, f) or ([f"hint: {ex.hint}"] if ex.hint else [])
        lines += ["  " + h for h in hints]
        return Report(ex.name, False, "\n".join(lines), tally.n, tally.worst)
    shapes = sorted((s for s in tally.shapes if s), key=len)
    error = f"worst relative error {tally.worst:.1e}" if tally.worst else "every output exactly equal"
    lines = [f"PASS {ex.name} ({ex.slide}, {ex.title}): {tally.n} inputs agree with minivl's reference; {error}."]
    if shapes:
        dtypes = f" (dtypes {', '.join(sorted(tally.dtypes))})" if tally.dtypes else ""
        lines.append(f"  shapes included{dtypes}: {'; '.join(dict.fromkeys(shapes[:2] + shapes[-1:]))}")
    lines.append(f"  minivl's own version: {ex.solution}")
    msg = "\n".join(lines)
    return Report(ex.name, True, msg, tally.n, tally.worst)


def _grade_statistical(ex: Exercise, fn) -> Report:
    head = f"{ex.name} ({ex.slide}, {ex.title})"
    try:
        with np.errstate(all="ignore"):
            findings, verified = ex.statistical(lambda *a: _call_student(ex, fn, dict(zip(ex.params, a))))
    except Failure as f:
        return Report(ex.name, False, "\n".join([f"FAIL {head}: {f.lines[0]}", *f.lines[1:]]))
    if findings:
        lines = [f"FAIL {head}:"]
        lines += [f"  {problem}" for problem, _ in findings]
        lines += [f"  hint: {hint}" for hint in dict.fromkeys(hint for _, hint in findings)]
        return Report(ex.name, False, "\n".join(lines))
    return Report(ex.name, True, f"PASS {head}: {verified}\n  minivl's own version: {ex.solution}")
