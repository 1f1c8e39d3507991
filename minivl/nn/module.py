"""``Module`` and ``Parameter``: the containers every layer and model builds on.

A Module finds its parameters and sub-modules by looking at its own
attributes (PyTorch's convention), so ``state_dict()`` keys read like the
code: ``blocks.0.attn.q_proj.weight``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minivl.tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module trains: ``requires_grad=True``, float32 by default."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        data = data.data if isinstance(data, Tensor) else data
        arr = np.asarray(data) if not hasattr(data, "__cuda_array_interface__") else data
        if dtype is None and arr.dtype.kind != "f":
            dtype = np.float32
        super().__init__(arr, requires_grad=True, dtype=dtype)


class Module:
    """Base class of every layer: override ``forward``; call the module itself."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call Module.__init__() in {type(self).__name__}.__init__ before assigning {name!r}")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array, persistent=True):
        """Non-trainable state (saved in ``state_dict`` when ``persistent``)."""
        object.__setattr__(self, name, array)
        if persistent:
            self._buffers[name] = name

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """``(dotted.name, Parameter)`` pairs; a parameter shared by two modules appears once."""
        seen = set()
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self, trainable_only=False):
        return int(sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only))

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze every parameter (LLaVA's frozen towers, S34)."""
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def to(self, device):
        """Move every parameter (and its gradient) and buffer to ``device`` ("cpu" or
        "cuda", see ``minivl.device``), in place; returns ``self``. Move the model before
        the optimizer's first step (its state arrays are made like the parameters then);
        ``state_dict()`` always returns host (NumPy) copies, so checkpoints load anywhere."""
        from minivl.device import to_array, to_device

        for p in self.parameters():
            to_device(p, device)
        for m in self.modules():
            for name in m._buffers:
                object.__setattr__(m, name, to_array(getattr(m, name), device))
        return self

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def apply(self, fn):
        for m in self.modules():
            fn(m)
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """``{name: ndarray}`` of every parameter and persistent buffer (copies)."""
        out = OrderedDict()
        for mod_name, m in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in m._parameters.items():
                out[pre + name] = _host(p.data).copy()
            for name in m._buffers:
                out[pre + name] = _host(getattr(m, name)).copy()
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters in place.

        With ``strict`` (the default) every key must match; the error lists the
        missing keys, the unexpected keys and the wrongly shaped ones together.
        Returns ``(missing, unexpected)``.
        """
        targets = {}
        for mod_name, m in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in m._parameters.items():
                targets[pre + name] = (m, name, p)
            for name in m._buffers:
                targets[pre + name] = (m, name, None)
        state = {k: (v.data if isinstance(v, Tensor) else v) for k, v in state.items()}
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        wrong = [
            f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {tuple(_current(t).shape)}"
            for k, t in targets.items()
            if k in state and tuple(np.shape(state[k])) != tuple(_current(t).shape)
        ]
        if wrong or (strict and (missing or unexpected)):
            lines = []
            if missing:
                lines.append("missing keys: " + ", ".join(missing))
            if unexpected:
                lines.append("unexpected keys: " + ", ".join(unexpected))
            if wrong:
                lines.append("wrong shapes: " + "; ".join(wrong))
            raise ValueError(f"load_state_dict into {type(self).__name__} failed:\n  " + "\n  ".join(lines))
        for k, (m, name, p) in targets.items():
            if k not in state:
                continue
            if p is not None:
                p.data[...] = _to_like(state[k], p.data)
            else:
                buf = getattr(m, name)
                object.__setattr__(m, name, _to_like(state[k], buf).copy())
        return missing, unexpected

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        if len(lines) == 1:
            return lines[0] + ")"
        n = self.num_parameters()
        return "\n".join(lines) + f"\n)  # {n:,} parameters"


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _current(target):
    m, name, p = target
    return p.data if p is not None else getattr(m, name)


def _to_like(src, like):
    src = np.asarray(src).astype(like.dtype, copy=False)
    if not isinstance(like, np.ndarray):
        import cupy

        return cupy.asarray(src)
    return src
