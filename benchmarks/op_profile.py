"""Where a minivl training step spends its time: a per-op breakdown.

``op_breakdown(step, repeats)`` runs ``step`` with every autograd
``Function``'s forward and backward wrapped in a timer (and the optimizer's
``step``), and returns the median milliseconds per step of each
``"Op.forward"`` / ``"Op.backward"`` / ``"optimizer"`` entry, plus
``"other"``: the step's time outside any of them (graph building, the
topological walk, gradient accumulation, Python glue).

``torch_breakdown(step, repeats)`` does the same for the PyTorch contender
with ``torch.profiler`` (self CPU time per aten op).

Used by ``bench_train.py --profile``; the timers add a few microseconds per
op, so the breakdown is for finding hot spots, never for the ratios.
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import time

from minivl.optim.optimizer import Optimizer
from minivl.tensor import Function


def _all_functions():
    seen, todo = [], [Function]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def _timed(fn, key, acc):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[key] += time.perf_counter() - t0

    return wrapper


@contextlib.contextmanager
def _instrumented(acc):
    """Wrap every Function's forward/backward and Optimizer.step to add their seconds to ``acc``."""
    saved = []
    for cls in _all_functions():
        for name in ("forward", "backward"):
            if name in cls.__dict__:
                raw = cls.__dict__[name]
                fn = raw.__func__ if isinstance(raw, staticmethod) else raw
                saved.append((cls, name, raw))
                setattr(cls, name, staticmethod(_timed(fn, f"{cls.__name__}.{name}", acc)))
    subclasses = [Optimizer, *Optimizer.__subclasses__()]
    for cls in subclasses:
        if "step" in cls.__dict__:
            saved.append((cls, "step", cls.__dict__["step"]))
            cls.step = _timed(cls.__dict__["step"], "optimizer", acc)
    try:
        yield
    finally:
        for cls, name, raw in saved:
            setattr(cls, name, raw)


def op_breakdown(step, repeats=5, top=None):
    """``{entry: median ms per step}`` for ``step()``, largest first (``top`` of them, the rest summed)."""
    step()  # warm-up outside the timers
    per_step = collections.defaultdict(list)
    for _ in range(repeats):
        acc = collections.defaultdict(float)
        with _instrumented(acc):
            t0 = time.perf_counter()
            step()
            total = time.perf_counter() - t0
        acc["other"] = total - sum(acc.values())
        acc["total"] = total
        for k, v in acc.items():
            per_step[k].append(v)
    return _rank({k: 1e3 * statistics.median(v) for k, v in per_step.items()}, top)


def torch_breakdown(step, repeats=5, top=None):
    """``{aten op: ms of self CPU time per step}`` for a PyTorch ``step()``, via torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    wall = (time.perf_counter() - t0) / repeats
    out = {e.key: e.self_cpu_time_total / 1e3 / repeats for e in prof.key_averages()}
    out["total"] = 1e3 * wall  # wall time per step under the profiler
    return _rank(out, top)


def _rank(ms, top):
    total = ms.pop("total")
    items = sorted(ms.items(), key=lambda kv: -kv[1])
    if top is not None and len(items) > top:
        rest = sum(v for _, v in items[top:])
        items = items[:top] + [("(rest)", rest)]
    return {"total": round(total, 3), **{k: round(v, 3) for k, v in items}}
