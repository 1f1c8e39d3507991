"""The one training loop every model uses (``minivl <model> train``, the tour,
the notebooks).

It is deliberately plain: draw a batch, compute the loss, backward, clip,
step, schedule; every ``eval_every`` steps call ``evaluate``; a tqdm bar shows
the loss. What differs between models lives in the ``loss_fn`` they pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from minivl import backend
from minivl.device import to_device
from minivl.tensor import no_grad


@dataclass
class History:
    """What a run recorded: per-step losses and the periodic evaluations."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)  # each {"step": s, **metrics}
    seconds: float = 0.0

    def last_eval(self) -> dict:
        return self.evals[-1] if self.evals else {}

    def after(self, begin: int, start: dict) -> History:
        """This session's record as steps of the whole run: a run resumed at step
        ``begin`` counts from there, and ``start`` (the evaluation made before
        training) goes first."""
        self.steps = [begin + k for k in self.steps]
        for e in self.evals:
            e["step"] += begin
        self.evals.insert(0, start)
        return self

    def as_dict(self) -> dict:
        return {"steps": self.steps, "loss": self.loss, "lr": self.lr, "evals": self.evals,
                "seconds": self.seconds}


def train(
    model,
    loss_fn: Callable,
    batches: Iterator,
    optimizer,
    steps: int,
    scheduler=None,
    clip_norm: float | None = 1.0,
    evaluate: Callable[[], dict] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "train",
    on_step: Callable[[int], None] | None = None,
    data_parallel=None,
) -> History:
    """Run ``steps`` optimisation steps.

    With ``data_parallel`` (a ``minivl.distributed.DataParallel``; ``mpirun``)
    every rank draws the same global batch and keeps its shard, gradients are
    averaged over ranks, the logged loss is the average of the ranks', and only
    rank 0 shows progress and evaluates (the others receive its metrics;
    ``lectures/07-scale.md``).

    ``loss_fn(model, batch)`` returns a scalar Tensor (or ``(loss, metrics)``);
    ``batches`` yields batches forever (see ``minivl.data.loader``);
    ``evaluate()`` returns a dict of metrics, run in eval mode without a graph.
    """
    from minivl.optim import clip_grad_norm

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    history = History()
    start = time.perf_counter()
    main = data_parallel is None or data_parallel.communicator.rank == 0
    progress = progress and main  # rank 0 speaks for all
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=False, mininterval=0.5)
    device = "cuda" if backend.current() == "cuda" else None  # the cuda backend trains on the GPU
    if device:
        model.to(device)  # before the optimizer's first step: its state is made like the parameters
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for step in bar:
        batch = next(batches)
        if device:
            batch = to_device(batch, device)
        if data_parallel is not None:
            batch = data_parallel.shard(batch)  # this rank's rows of the global batch
        out = loss_fn(model, batch)
        loss = out[0] if isinstance(out, tuple) else out
        optimizer.zero_grad()
        if data_parallel is None:
            loss.backward()
        else:
            data_parallel.backward(loss)  # every .grad: the average over ranks
        if clip_norm:
            clip_grad_norm(params, clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        value = float(loss.item()) if data_parallel is None else data_parallel.average(loss.item())
        if not np.isfinite(value):
            raise FloatingPointError(f"{desc}: loss became {value} at step {step}")
        history.steps.append(step)
        history.loss.append(value)
        history.lr.append(float(optimizer.param_groups[0]["lr"]))
        if on_step is not None:
            on_step(step)
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
            metrics = run_eval(model, evaluate) if main else None
            if data_parallel is not None:  # rank 0 evaluates, every rank records the result
                metrics = data_parallel.communicator.bcast_object(metrics)
            history.evals.append({"step": step, **metrics})
            bar.set_postfix(loss=f"{value:.3f}", **{k: f"{v:.3f}" for k, v in list(history.evals[-1].items())[1:3]})
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
    history.seconds = time.perf_counter() - start
    return history


def run_eval(model, evaluate: Callable[[], dict]) -> dict:
    """Call ``evaluate()`` in eval mode without recording a graph, then restore the mode."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return dict(evaluate())
    finally:
        model.train(was_training)


def forever(make_epoch: Callable[[], Iterator]):
    """Yield batches from fresh epochs without end."""
    while True:
        yield from make_epoch()
