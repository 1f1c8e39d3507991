"""The one runner behind every homework checker: draw inputs, compare, explain.

An :class:`Exercise` states a plain-NumPy function a student writes (its stub,
signature and docstring), minivl's reference for it, a hypothesis strategy of
inputs, a tolerance and the typical mistakes. :func:`run_check` then

1. checks the signature, and that the function is not still the stub;
2. lets hypothesis draw inputs the student did not choose (odd shapes, size-1
   axes, large magnitudes, masked rows, float32 and float64), calls the
   student's function and the reference on copies of each, and compares shape,
   dtype, NaNs and values at the stated tolerance; hypothesis shrinks a failure
   to the smallest input it can find;
3. for statistical exercises, also runs a fixed-seed test whose claims hold
   with a stated confidence;
4. explains a failure: the input, expected and received values (or their first
   differing entries), the relative error, and one hint. The hint comes from
   replaying each known mistake (minivl's reference with one typical error
   planted) on the failing input: the mistake whose output equals the
   student's names what went wrong.

Only the student's function runs (``load_function`` executes a file's imports
and definitions, nothing else); an exception inside it, a wrong signature,
shape, dtype or a NaN becomes a message, never a traceback.
"""

from __future__ import annotations

import copy
import inspect
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from minivl.testing import relative_error


class Mismatch(AssertionError):
    """The student's output differs from what the exercise asks; ``hint_key`` names a mistake."""

    def __init__(self, message, hint_key=None, detail=""):
        super().__init__(message)
        self.message, self.hint_key, self.detail = message, hint_key, detail
        self.inputs = None


class _StudentRaised(Exception):
    def __init__(self, error, where):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error, self.where = error, where
        self.inputs = None


@dataclass
class Mistake:
    """A typical error: ``fn`` is the reference with it planted; ``hint`` teaches the fix."""

    name: str
    hint: str
    fn: Callable | None = None  # None: recognised by a statistical claim (``hint_key``) instead


@dataclass
class Claim:
    """One statement a statistical test checks, with the evidence and the mistake it points to."""

    text: str
    ok: bool
    detail: str = ""
    hint_key: str | None = None


@dataclass
class Exercise:
    name: str  # also the name of the student's function
    title: str
    slide: str  # lecture slide(s), e.g. "S15"
    part: str  # which exercise notebook it belongs to
    stub: str  # the student's starting code: signature, docstring, NotImplementedError
    reference: Callable  # minivl's answer, with the student's signature
    inputs: st.SearchStrategy  # draws a dict of arguments, in the signature's order
    outputs: tuple[str, ...]  # names of the returned values
    mistakes: list[Mistake]
    hint: str  # the general hint when no known mistake matches
    solution: str  # where minivl's own code lives, shown after the exercise
    checks: str  # one line: what the checker verifies
    rtol: dict = field(default_factory=lambda: {np.float32: 2e-4, np.float64: 1e-7})
    atol: dict = field(default_factory=lambda: {np.float32: 2e-5, np.float64: 1e-9})
    max_examples: int = 60
    compare: Callable | None = None  # custom (inputs, expected, got) -> None, raising Mismatch
    properties: Callable | None = None  # checks on the output alone (inputs, got) -> None
    statistical: Callable | None = None  # (fn) -> list[Claim], fixed seed
    describe: Callable | None = None  # inputs -> short shape summary for the success report

    @property
    def params(self) -> list[str]:
        return list(inspect.signature(self.reference).parameters)


@dataclass
class Result:
    exercise: str
    passed: bool
    text: str
    examples: int = 0
    worst_error: float = 0.0
    reason: str = ""  # "", "stub", "signature", "exception", "mismatch", "statistics"
    hint_key: str | None = None

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return f"<check {self.exercise}: {'passed' if self.passed else 'FAILED (' + self.reason + ')'}>"

    def as_dict(self):
        return {"exercise": self.exercise, "passed": self.passed, "reason": self.reason,
                "examples": self.examples, "worst_error": self.worst_error, "hint": self.hint_key}


# --------------------------------------------------------------------------- formatting

def _fmt(value, limit=6):
    if isinstance(value, np.ndarray):
        body = np.array2string(value, precision=5, threshold=48, edgeitems=2, max_line_width=100)
        body = body.replace("\n", "\n" + " " * 14)
        return f"{body}   {value.shape} {value.dtype}"
    if isinstance(value, np.random.Generator):
        return "np.random.Generator (seeded by the checker)"
    if isinstance(value, (list, tuple)) and len(value) > 24:
        return f"{type(value).__name__} of {len(value)}: {value[:limit]!r} ..."
    if isinstance(value, str) and len(value) > 80:
        return repr(value[:80]) + " ..."
    return repr(value)


def _fmt_inputs(inputs):
    return "\n".join(f"    {k:>9} = {_fmt(v)}" for k, v in inputs.items())


def _first_differences(expected, got, close, n=3):
    idx = np.argwhere(~close)[:n]
    return "; ".join(f"[{', '.join(map(str, i))}] expected {expected[tuple(i)]!r} got {got[tuple(i)]!r}"
                     for i in idx)


def _shape_summary(inputs):
    return ", ".join(f"{k} {v.shape}" for k, v in inputs.items() if isinstance(v, np.ndarray))


# --------------------------------------------------------------------------- comparing

def _as_outputs(ex, value):
    if len(ex.outputs) == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != len(ex.outputs):
        n = len(value) if isinstance(value, (tuple, list)) else 1
        raise Mismatch(f"{ex.name} must return {len(ex.outputs)} values ({', '.join(ex.outputs)}), "
                       f"got {n} ({type(value).__name__})", "shape")
    return tuple(value)


def compare_arrays(ex, name, expected, got):
    """Shape, dtype, NaN and value checks of one returned array; returns the relative error."""
    expected = np.asarray(expected)
    if got is None:
        raise Mismatch(f"{name}: your function returned None (a missing `return`?)", "shape")
    try:
        got = np.asarray(got)
    except Exception as e:  # noqa: BLE001 - a ragged list, an object: say so
        raise Mismatch(f"{name}: cannot be read as an array ({e})", "shape") from None
    if got.shape != expected.shape:
        raise Mismatch(f"{name}: shape {got.shape}, expected {expected.shape}", "shape")
    if expected.dtype.kind == "f":
        if got.dtype != expected.dtype:
            raise Mismatch(f"{name}: dtype {got.dtype}, expected {expected.dtype} (keep the input's precision: "
                           "a float64 constant such as np.sqrt(d) or np.float64(...) promotes float32 arrays; "
                           "use math.sqrt or .astype(x.dtype))", "dtype")
        if np.isnan(got).any() and not np.isnan(expected).any():
            where = tuple(int(i) for i in np.argwhere(np.isnan(got))[0])
            raise Mismatch(f"{name}: NaN at {list(where)} where a number was expected", None,
                           detail=f"expected {expected[where]!r}")
        rtol, atol = ex.rtol[expected.dtype.type], ex.atol[expected.dtype.type]
        close = np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
        finite = np.isfinite(expected) & np.isfinite(got)
        err = relative_error(got[finite], expected[finite]) if finite.any() else 0.0
        if not close.all():
            raise Mismatch(
                f"{name}: values differ (tolerance rtol={rtol:g}, atol={atol:g} for {expected.dtype})",
                None, detail=f"first differing entries: {_first_differences(expected, got, close)}\n"
                             f"  relative error: {err:.3g}")
        return err
    if expected.dtype.kind in "iub":
        if got.dtype.kind not in "iub":
            raise Mismatch(f"{name}: dtype {got.dtype}, expected integers or booleans ({expected.dtype})", "dtype")
        same = got == expected
        if not same.all():
            raise Mismatch(f"{name}: values differ", None,
                           detail=f"first differing entries: {_first_differences(expected, got, same)}")
        return 0.0
    if not np.array_equal(got, expected):
        raise Mismatch(f"{name}: values differ", None)
    return 0.0


def _compare(ex, inputs, expected, got):
    if ex.compare is not None:
        return ex.compare(inputs, expected, got) or 0.0
    worst = 0.0
    for name, e, g in zip(ex.outputs, _as_outputs(ex, expected), _as_outputs(ex, got)):
        worst = max(worst, compare_arrays(ex, name, e, g))
    return worst


def _matches(ex, inputs, mistake, got):
    try:
        planted = mistake.fn(**copy.deepcopy(inputs))
        with np.errstate(all="ignore"):
            _compare(ex, inputs, planted, got)
        return True
    except Exception:  # noqa: BLE001 - the mistake does not reproduce the student's output
        return False


# --------------------------------------------------------------------------- calling the student

def _call(fn, inputs):
    try:
        with np.errstate(all="ignore"):
            return fn(*copy.deepcopy(list(inputs.values())))
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - any error of the student's code becomes a message
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename != __file__]
        where = f"line {frames[-1].lineno} of {frames[-1].filename}: {frames[-1].line}" if frames else ""
        raise _StudentRaised(e, where) from None


def _signature_problem(ex, fn):
    if not callable(fn):
        return f"expected a function {ex.name}({', '.join(ex.params)}), got {type(fn).__name__}"
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*ex.params)
    except TypeError as e:
        return (f"the checker calls {ex.name}({', '.join(ex.params)}), but your function is "
                f"{getattr(fn, '__name__', ex.name)}{sig}: {e}")
    return None


def _hint_text(ex, key):
    for m in ex.mistakes:
        if m.name == key:
            return f"hint ({m.name}): {m.hint}"
    if key == "shape":
        return "hint: check the docstring's shapes: which axes the output keeps, in which order."
    if key == "dtype":
        return "hint: return the dtype the docstring asks for."
    return f"hint: {ex.hint}"


def run_check(ex: Exercise, fn, max_examples: int | None = None, seed: int = 0) -> Result:
    header = f"minivl check {ex.name} ({ex.title}, slide {ex.slide})"
    problem = _signature_problem(ex, fn)
    if problem:
        return Result(ex.name, False, f"{header}: FAILED\n  wrong signature: {problem}", reason="signature")

    stats = {"n": 0, "shapes": set(), "worst": 0.0, "dtypes": set()}

    def one(inputs):
        got = _call(fn, inputs)
        stats["n"] += 1
        stats["shapes"].add(ex.describe(inputs) if ex.describe else _shape_summary(inputs))
        stats["dtypes"].update(str(v.dtype) for v in inputs.values()
                               if isinstance(v, np.ndarray) and v.dtype.kind == "f")
        try:
            if ex.properties is not None:
                ex.properties(inputs, got)
            if ex.reference is not None and ex.statistical is None:
                expected = ex.reference(**copy.deepcopy(inputs))
                stats["worst"] = max(stats["worst"], _compare(ex, inputs, expected, got))
        except Mismatch as m:
            m.inputs = inputs
            raise

    @settings(max_examples=max_examples or ex.max_examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], print_blob=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(ex.inputs)
    def search(inputs):
        try:
            one(inputs)
        except _StudentRaised as e:
            e.inputs = inputs
            raise

    try:
        search()
    except NotImplementedError:
        return Result(ex.name, False, f"{header}: FAILED\n  {ex.name} is still the stub: it raises "
                      "NotImplementedError. Write its body, then run the check again.", reason="stub")
    except _StudentRaised as e:
        text = (f"{header}: FAILED\n  your function raised {type(e.error).__name__}: {e.error}\n"
                f"  {e.where}\n  on the smallest input found:\n{_fmt_inputs(e.inputs)}\n  {_hint_text(ex, 'shape')}")
        return Result(ex.name, False, text, examples=stats["n"], reason="exception")
    except Mismatch as m:
        return _explain(ex, fn, m, header, stats)

    if ex.statistical is not None:
        try:
            claims = ex.statistical(fn)
        except NotImplementedError:
            return Result(ex.name, False, f"{header}: FAILED\n  {ex.name} is still the stub.", reason="stub")
        except _StudentRaised as e:
            return Result(ex.name, False, f"{header}: FAILED\n  your function raised "
                          f"{type(e.error).__name__}: {e.error}\n  {e.where}", reason="exception")
        bad = [c for c in claims if not c.ok]
        if bad:
            c = bad[0]
            text = (f"{header}: FAILED the fixed-seed statistical test\n  claim: {c.text}\n  {c.detail}\n"
                    f"  {_hint_text(ex, c.hint_key)}")
            return Result(ex.name, False, text, examples=stats["n"], reason="statistics", hint_key=c.hint_key)

    shapes = sorted(stats["shapes"], key=len)
    lines = [f"{header}: passed",
             f"  verified: {ex.checks}",
             f"  {stats['n']} drawn inputs" + (f" ({', '.join(sorted(stats['dtypes']))})" if stats["dtypes"] else "")
             + (f", e.g. {'; '.join(shapes[:2])} ... {shapes[-1]}" if len(shapes) > 2 else
                f", {'; '.join(shapes)}" if shapes else "")]
    if ex.statistical is None:
        lines.append(f"  worst relative error: {stats['worst']:.2g}")
    else:
        lines += [f"  statistical test: {c.text} ({c.detail})" for c in claims]
    lines.append(f"  minivl's own code for it: {ex.solution}")
    return Result(ex.name, True, "\n".join(lines), examples=stats["n"], worst_error=stats["worst"])


def _explain(ex, fn, m, header, stats):
    inputs = m.inputs
    key = m.hint_key
    lines = [f"{header}: FAILED", "  on the smallest failing input hypothesis found:", _fmt_inputs(inputs)]
    got = None
    try:
        got = _call(fn, inputs)
    except Exception:  # noqa: BLE001 - it did not raise during the search; keep the Mismatch's story
        pass
    if ex.reference is not None and ex.statistical is None and got is not None:
        expected = ex.reference(**copy.deepcopy(inputs))
        lines += [f"  expected: {_fmt(expected)}", f"  got:      {_fmt(got)}"]
    lines.append(f"  {m.message}")
    if m.detail:
        lines.append(f"  {m.detail}")
    if key is None and got is not None:
        for mistake in ex.mistakes:
            if mistake.fn is not None and _matches(ex, inputs, mistake, got):
                key = mistake.name
                break
    lines.append(f"  {_hint_text(ex, key)}")
    return Result(ex.name, False, "\n".join(lines), examples=stats["n"], reason="mismatch", hint_key=key)


Any = Any
