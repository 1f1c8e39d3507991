"""Model checkpoints: the weights and the config that rebuilds the model, in one
safetensors file (the config rides in the file's metadata as JSON).

    save_checkpoint(model, "gpt.safetensors", steps=300)
    model = load_checkpoint(GPT, "gpt.safetensors")

Any model with a dataclass ``config`` and a ``Config`` class attribute works
(BERT, GPT, ViT).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from minivl.io import load, load_metadata, save


def save_checkpoint(model, path, **metadata):
    """Write ``model.state_dict()`` with its ``config`` (a dataclass) to ``path``."""
    meta = {"model": type(model).__name__, "config": json.dumps(asdict(model.config))}
    meta.update({k: str(v) for k, v in metadata.items()})
    save(model.state_dict(), path, metadata=meta)


def load_checkpoint(cls, path):
    """Rebuild a ``cls`` model (BERT, GPT, ViT) from a file written by ``save_checkpoint``."""
    meta = load_metadata(path)
    if meta.get("model") != cls.__name__:
        raise ValueError(f"{path} holds a {meta.get('model')!r} checkpoint, not {cls.__name__}")
    model = cls(cls.Config(**json.loads(meta["config"])))
    model.load_state_dict(load(path))
    return model
