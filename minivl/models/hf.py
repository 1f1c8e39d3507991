"""Loading Hugging Face checkpoints: one rules table per model, one loader for all.

nanoGPT's ``GPT.from_pretrained`` copies a checkpoint key for key and
transposes a short list of keys; nothing else. minivl does the same with a
table. Each model declares ``HF_RULES``, a list of ``Rule(source, target)``
read top to bottom (the first rule whose source matches a key wins), and
``load_hf`` applies it:

    Rule("h.{i}.ln_1.{p}", "transformer.encoder.blocks.{i}.ln_1.{p}")       # rename
    Rule("h.{i}.mlp.c_fc.{p}", "...mlp.fc1.{p}", transpose=True)            # (in, out) -> (out, in)
    Rule("h.{i}.attn.c_attn.{p}", ("...q_proj.{p}", "...k_proj.{p}", "...v_proj.{p}"),
         axis=-1, transpose=True)                                           # split in three
    Rule(("q.{p}", "k.{p}", "v.{p}"), "qkv.{p}")                            # concatenate
    Rule("h.{i}.attn.masked_bias", None)                                     # drop on purpose

Patterns are written as the names themselves. Three placeholders stand for
one part of a name, copied into the target: ``{i}`` a layer number, ``{p}``
``weight`` or ``bias``, ``{x}`` any part (``mlp.{x}.{p}`` keeps ``fc1``).
``{a|b}`` accepts either spelling (``{bert.|}``: with or without the prefix).
Every checkpoint key must be used by some rule and every weight of the model
must be produced by one; either failure names the keys. ``load_hf`` returns
the model in eval mode, as ``from_pretrained`` does, so a loaded model
computes what the original computes.

The settings helpers (``hf_setting``, ``hf_activation``) read a ``config.json``
dict or a ``transformers`` config object alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

# Hugging Face's activation names -> minivl's (nn.get_activation).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "quick_gelu": "quick_gelu", "relu": "relu"}

_PLACEHOLDERS = {"i": r"\d+", "p": r"weight|bias", "x": r"[^.]+"}


@dataclass(frozen=True)
class Rule:
    """One line of a rules table: checkpoint name(s) -> our name(s), and what to do on the way.

    ``source``: a checkpoint name pattern, or a tuple of them whose arrays are
    concatenated along ``axis``. ``target``: our name, a tuple of names (the
    array is split along ``axis`` into that many equal parts), or None (the key
    is dropped on purpose: a buffer, a tied copy). ``transpose`` turns each
    2-D result from (in, out) into (out, in) (GPT-2's Conv1D); ``reshape``
    gives it the shape of our parameter (CLIP's class embedding ``(D,)`` is
    our ``(1, 1, D)``). ``axis`` counts in the checkpoint's layout.
    """

    source: str | tuple[str, ...]
    target: str | tuple[str, ...] | None
    transpose: bool = False
    reshape: bool = False
    axis: int = 0

    @property
    def sources(self) -> tuple[str, ...]:
        return self.source if isinstance(self.source, tuple) else (self.source,)

    @property
    def targets(self) -> tuple[str, ...]:
        if self.target is None:
            return ()
        return self.target if isinstance(self.target, tuple) else (self.target,)


@cache
def _compile(pattern: str) -> re.Pattern:
    """``"h.{i}.ln_1.{p}"`` -> a regular expression matching whole names, with named groups."""
    out = []
    for part in re.split(r"(\{[^}]*\})", pattern):
        body = part[1:-1]
        if part.startswith("{") and body in _PLACEHOLDERS:
            out.append(f"(?P<{body}>{_PLACEHOLDERS[body]})")
        elif part.startswith("{"):
            out.append("(?:" + "|".join(re.escape(a) for a in body.split("|")) + ")")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def _match(rules, key):
    """The first rule a checkpoint key matches, the index of the key among its sources, and the groups."""
    for rule in rules:
        for k, source in enumerate(rule.sources):
            m = _compile(source).fullmatch(key)
            if m:
                return rule, k, m.groupdict()
    return None, None, None


def _fill(pattern: str, groups: dict) -> str:
    """Put the placeholder values back: ``_fill("blocks.{i}.ln_1.{p}", {"i": "3", "p": "bias"})``."""
    return re.sub(r"\{(\w+)\}", lambda m: groups[m.group(1)], pattern)


def rename(key: str, rules) -> str | tuple[str, ...] | None:
    """Our name(s) for one checkpoint key (a tuple for a split, None when dropped)."""
    rule, _, groups = _match(rules, key)
    if rule is None:
        raise KeyError(f"no rule matches the checkpoint key {key!r}")
    names = tuple(_fill(t, groups) for t in rule.targets)
    return names[0] if isinstance(rule.target, str) else (names or None)


def convert(state_dict, rules, shapes=None) -> dict:
    """The checkpoint under our names, as float32 NumPy arrays.

    ``state_dict`` maps checkpoint names to arrays (NumPy or torch). ``shapes``
    (our name -> shape) is needed only by ``reshape`` rules. Raises a
    ValueError naming every checkpoint key that no rule matches, and every
    part of a concatenation that is missing.
    """
    # (rule, placeholder values) -> {source index: array}: the parts of one
    # concatenation meet here; a plain rename is a concatenation of one.
    unused, pending, out = [], {}, {}
    for key, value in state_dict.items():
        rule, k, groups = _match(rules, key)
        if rule is None:
            unused.append(key)
            continue
        if rule.target is None:
            continue
        part = tuple(sorted(groups.items()))
        pending.setdefault((rule, part), {})[k] = _array(value)
    if unused:
        raise ValueError("no rule uses the checkpoint keys: " + ", ".join(unused))
    for (rule, part), arrays in pending.items():
        groups = dict(part)
        if len(arrays) != len(rule.sources):
            absent = [_fill(s, groups) for k, s in enumerate(rule.sources) if k not in arrays]
            raise ValueError("the checkpoint lacks " + ", ".join(absent) + " to concatenate")
        array = arrays[0]
        if len(arrays) > 1:
            array = np.concatenate([arrays[k] for k in range(len(arrays))], axis=rule.axis)
        names = [_fill(t, groups) for t in rule.targets]
        pieces = np.split(array, len(names), axis=rule.axis) if len(names) > 1 else [array]
        for name, piece in zip(names, pieces):
            if rule.transpose and piece.ndim == 2:
                piece = piece.T  # (in, out) -> (out, in)
            if rule.reshape:
                piece = piece.reshape(shapes[name])
            out[name] = piece.copy()  # C order, whatever the transpose left
    return out


def load_hf(model, state_dict, rules, optional=()):
    """Copy a Hugging Face checkpoint into ``model`` through ``rules``; returns it in eval mode.

    ``optional``: prefixes of our names the checkpoint may lack (BERT's pooler
    in a ``BertForMaskedLM``); those keep their current values. A weight that
    is tied to another (GPT's head and its token embeddings) counts as loaded
    with it. Any other weight that no rule produced is named in the error.
    """
    owner = type(model).__name__
    expected = {name: p.shape for name, p in model.named_parameters()}  # tied weights once
    current = model.state_dict()
    try:
        ours = convert(state_dict, rules, {k: v.shape for k, v in current.items()})
    except ValueError as err:
        raise ValueError(f"{owner}.from_hf: {err}") from None
    unknown = [k for k in ours if k not in current]
    missing = [k for k in expected if k not in ours and not k.startswith(tuple(optional))]
    if unknown or missing:
        lines = []
        if missing:
            lines.append("the checkpoint lacks " + ", ".join(missing))
        if unknown:
            lines.append("the rules produce names the model does not have: " + ", ".join(unknown))
        raise ValueError(f"{owner}.from_hf: " + "; ".join(lines))
    model.load_state_dict(ours, strict=False)  # wrong shapes still raise, by name
    return model.eval()


def _array(value) -> np.ndarray:
    """A float32 NumPy copy of a checkpoint entry (torch tensor or array)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32).copy()


def hf_setting(config, name, default=None):
    """``config.name`` for a ``transformers`` config object, or ``config[name]`` for a dict
    (``config.json``, ``config.to_dict()``); a missing or None setting (GPT-2's ``n_inner``)
    gives ``default``."""
    value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
    return default if value is None else value


def hf_activation(name, supported=tuple(HF_ACTIVATIONS)) -> str:
    """minivl's name for a Hugging Face activation, or a ValueError listing those supported."""
    if name not in supported:
        raise ValueError(f"activation {name!r} is not supported; expected one of {sorted(supported)}")
    return HF_ACTIVATIONS[name]
