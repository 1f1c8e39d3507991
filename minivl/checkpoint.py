"""Checkpoints, one module for every model and command.

Two kinds of file, both one safetensors file with JSON in its metadata:

* a *model checkpoint*: the weights and the config that rebuilds the model::

      save_checkpoint(model, "gpt.safetensors", steps=300)
      model = load_checkpoint(GPT, "gpt.safetensors")

* a *training state*: the model checkpoint plus everything a run needs to
  continue exactly where it stopped: optimizer moments, scheduler step,
  global step and the state of minivl's global random generator (dropout)::

      save_training_state("run.safetensors", model, optimizer, scheduler, step)
      step = load_training_state("run.safetensors", model, optimizer, scheduler)

Any model with a dataclass ``config`` and a ``Config`` class attribute works
(BERT, GPT, ViT, CLIP).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from minivl import random as mv_random
from minivl.io import load, load_metadata, save
from minivl.optim import flatten_state_dict, unflatten_state_dict


def _model_meta(model, metadata) -> dict:
    meta = {"model": type(model).__name__, "config": json.dumps(asdict(model.config))}
    meta.update({k: str(v) for k, v in metadata.items()})
    return meta


def _check_kind(path, meta, cls):
    if meta.get("model") != cls.__name__:
        raise ValueError(f"{path} holds a {meta.get('model')!r} checkpoint, not {cls.__name__}")


def save_checkpoint(model, path, **metadata):
    """Write ``model.state_dict()`` with its ``config`` (a dataclass) to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save(model.state_dict(), path, metadata=_model_meta(model, metadata))


def load_checkpoint(cls, path):
    """Rebuild a ``cls`` model from a file written by ``save_checkpoint`` or ``save_training_state``."""
    meta = load_metadata(path)
    _check_kind(path, meta, cls)
    state = load(path)
    if "step" in state:  # a training state: the weights are the "model." entries
        state = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    model = cls(cls.Config(**json.loads(meta["config"])))
    model.load_state_dict(state)
    return model


def checkpoint_metadata(path) -> dict:
    """The metadata a checkpoint was saved with (``model``, ``config`` and the extras)."""
    return load_metadata(path)


def save_training_state(path, model, optimizer, scheduler, step, **metadata):
    """One file: weights, config, optimizer and scheduler state, step and the global RNG."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"optimizer.{k}": v for k, v in flatten_state_dict(optimizer.state_dict()).items()})
    state["scheduler.last_step"] = np.array(scheduler.last_step if scheduler is not None else 0)
    state["step"] = np.array(step)
    meta = _model_meta(model, metadata)
    meta["rng"] = json.dumps(mv_random.rng().bit_generator.state)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save(state, path, metadata=meta)


def load_training_state(path, model, optimizer, scheduler) -> int:
    """Restore ``model``, ``optimizer``, ``scheduler`` and the global RNG in place; returns the step."""
    meta = load_metadata(path)
    _check_kind(path, meta, type(model))
    if "rng" not in meta:
        raise ValueError(f"{path} is a model checkpoint, not a training state: it cannot be resumed")
    state = load(path)
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    optimizer.load_state_dict(unflatten_state_dict(
        {k[10:]: v for k, v in state.items() if k.startswith("optimizer.")}))
    if scheduler is not None:
        scheduler.load_state_dict({"last_step": int(state["scheduler.last_step"])})
    mv_random.rng().bit_generator.state = json.loads(meta["rng"])
    return int(state["step"])


def skip(batches, n):
    """``batches`` (an iterator) after its first ``n`` items, so a run resumed at step
    ``n`` draws the batches the uninterrupted run would have drawn next."""
    for _ in range(n):
        next(batches)
    return batches


def cache_dir() -> Path:
    """Where trained defaults (detector, BERT, dVAE, judge, rerankers) are kept:
    ``$MINIVL_CACHE``, or ``~/.cache/minivl`` when it is unset or empty."""
    return Path(os.environ.get("MINIVL_CACHE") or Path.home() / ".cache" / "minivl")
