"""Activation functions by name, so configs can say ``activation="quick_gelu"``."""

from __future__ import annotations

from minivl import functional as F

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # erf form: BERT, ViT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "quick_gelu": F.quick_gelu,  # CLIP
    "relu": F.relu,
    "tanh": F.tanh,
}


def get_activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
