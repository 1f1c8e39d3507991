"""The optimizer base class: parameter groups, per-parameter state, checkpoints.

The interface is PyTorch's ``torch.optim.Optimizer``, so code written against
either reads the same:

    opt = AdamW(model.parameters(), lr=3e-4)
    loss.backward(); opt.step(); opt.zero_grad()

A parameter is anything with ``.data`` (an array, updated in place so tied and
viewed weights stay shared), ``.grad`` (an array or None) and
``.requires_grad``. Parameters with no gradient or ``requires_grad=False`` are
skipped, which is how frozen towers stay frozen (LLaVA stage 1).

``params`` is a list of parameters, or a list of *groups*
``{"params": [...], "lr": 1e-3, ...}`` whose hyper-parameters override the
constructor's for those parameters (e.g. no weight decay on biases and norms).

Subclasses write the update rule for one parameter in ``update`` and nothing
else; state (moments, step counts) is kept per parameter and exported by
parameter *index*, so ``flatten_state_dict`` turns it into a flat
``{name: array}`` that ``minivl.io.save`` can write.
"""

from __future__ import annotations

import numpy as np

from minivl.tensor import array_module


class Optimizer:
    #: names of the per-parameter state entries that are arrays shaped like the
    #: parameter (everything else in the state is a Python number, e.g. "step")
    state_arrays: tuple[str, ...] = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}  # id(parameter) -> that parameter's state
        if _is_parameter(params):
            raise TypeError(
                "params must be an iterable of parameters or of groups, got one parameter;"
                " wrap it in a list"
            )
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add ``{"params": [...], **hyper-parameters}``; missing ones take the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with a 'params' key, got {group!r}")
        group = {**self.defaults, **group}
        params = group["params"]
        group["params"] = [params] if _is_parameter(params) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if not _is_parameter(p):
                raise TypeError(
                    f"optimizer can only update parameters (with .data, .grad,"
                    f" .requires_grad), got {type(p).__name__}"
                )
            if id(p) in seen:
                raise ValueError("a parameter appears more than once among the optimizer's groups")
            seen.add(id(p))
        self.check_hyperparameters(group)
        self.param_groups.append(group)

    def check_hyperparameters(self, group):
        """Raise ValueError for out-of-range values in ``group`` (subclasses override)."""

    def zero_grad(self):
        """Forget every gradient (set to None, so the next backward starts afresh)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        """Update every parameter that has a gradient, one ``update`` call each."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                self.update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def update(self, p, grad, state, group):  # pragma: no cover - abstract
        """Change ``p.data`` in place, given its gradient, its state dict and its group."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self):
        """A snapshot: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``.

        Indices count the parameters across the groups in order, as PyTorch's do.
        Arrays are copies, so later steps do not change a saved snapshot.
        """
        index, groups = {}, []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {
            index[key]: {name: _host_copy(value) for name, value in entry.items()}
            for key, entry in self.state.items()
            if key in index
        }
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` (or ``unflatten_state_dict`` of a saved one).

        The optimizer must have been built over the same parameters, in the same
        groups; state arrays are copied onto each parameter's device and dtype.
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(groups)} parameter groups, this optimizer"
                f" {len(self.param_groups)}"
            )
        params = []
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i}: state_dict has {len(saved['params'])} parameters,"
                    f" this optimizer {len(group['params'])}"
                )
            params.extend(group["params"])
        state = {}
        for index, entry in state_dict["state"].items():
            index = int(index)
            if not 0 <= index < len(params):
                raise ValueError(f"state for parameter {index}, but there are {len(params)}")
            state[id(params[index])] = self._restore(params[index], index, entry)
        # Only now that everything checked out, change the optimizer.
        for saved, group in zip(groups, self.param_groups):
            group.update({k: _copy(v) for k, v in saved.items() if k != "params"})
        self.state = state

    def _restore(self, p, index, entry):
        restored = {}
        for name, value in entry.items():
            if name in self.state_arrays:
                if np.shape(value) != p.data.shape:
                    raise ValueError(
                        f"state {name!r} of parameter {index} has shape {np.shape(value)},"
                        f" the parameter {p.data.shape}"
                    )
                restored[name] = array_module(p.data).array(value, dtype=p.data.dtype)
            else:
                restored[name] = value.item() if hasattr(value, "item") else value
        return restored


def flatten_state_dict(state_dict):
    """``Optimizer.state_dict()`` -> flat ``{name: np.ndarray}`` for ``minivl.io.save``.

    Names are ``state.<param index>.<entry>`` and ``param_groups.<i>.<key>``;
    numbers become 0-d arrays, tuples (Adam's betas) and index lists 1-d arrays.
    """
    flat = {}
    for i, group in enumerate(state_dict["param_groups"]):
        for key, value in group.items():
            dtype = np.int64 if key == "params" else None  # an empty list must stay integer
            flat[f"param_groups.{i}.{key}"] = _host_array(value, key, dtype)
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            flat[f"state.{index}.{key}"] = _host_array(value, key)
    return flat


def unflatten_state_dict(flat):
    """Inverse of ``flatten_state_dict``: a dict ``Optimizer.load_state_dict`` accepts."""
    groups, state = {}, {}
    for name, value in flat.items():
        section, index, key = _split_name(name)
        value = np.asarray(value)
        if section == "state":
            state.setdefault(index, {})[key] = value  # load_state_dict sorts arrays from counts
        elif key == "params":
            groups.setdefault(index, {})[key] = [int(i) for i in value]
        elif value.ndim == 0:
            groups.setdefault(index, {})[key] = value.item()
        else:
            groups.setdefault(index, {})[key] = tuple(value.tolist())
    if sorted(groups) != list(range(len(groups))):
        raise ValueError(f"parameter groups must be numbered 0..n-1, got {sorted(groups)}")
    return {
        "state": dict(sorted(state.items())),
        "param_groups": [groups[i] for i in sorted(groups)],
    }


def _split_name(name):
    parts = name.split(".")
    if len(parts) != 3 or parts[0] not in ("state", "param_groups") or not parts[1].isdigit():
        raise ValueError(
            f"{name!r} is not an optimizer state name (state.<i>.<key> or param_groups.<i>.<key>)"
        )
    return parts[0], int(parts[1]), parts[2]


def _host_array(value, key, dtype=None):
    if hasattr(value, "__cuda_array_interface__"):
        value = value.get()  # CuPy -> host
    arr = np.array(value, dtype=dtype)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"optimizer state {key!r} = {value!r} is not numeric; cannot flatten it")
    return arr


def _host_copy(value):
    """A copy on the host: GPU (CuPy) state arrays come back as NumPy, so a saved state loads anywhere."""
    if hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray):
        return value.get()
    return _copy(value)


def _copy(value):
    return value.copy() if hasattr(value, "copy") else value  # arrays, lists; numbers are immutable


def _is_parameter(x):
    return hasattr(x, "data") and hasattr(x, "grad") and hasattr(x, "requires_grad")
