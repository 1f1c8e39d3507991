"""Stochastic gradient descent, with momentum and Nesterov momentum (PyTorch semantics).

    g = grad + weight_decay * p                 (L2 penalty, as a gradient)
    b = momentum * b + g        (the "velocity", b = 0 before the first step)
    p -= lr * b                 or, Nesterov,   p -= lr * (g + momentum * b)

This is PyTorch's form of momentum (Sutskever et al., 2013, ICML), where lr
multiplies the velocity rather than being folded into it; the two agree for a
constant lr.
"""

from __future__ import annotations

import numpy as np

from minivl.optim.optimizer import Optimizer


class SGD(Optimizer):
    state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def check_hyperparameters(self, group):
        for name in ("lr", "momentum", "weight_decay"):
            if not group[name] >= 0:
                raise ValueError(f"SGD: {name} must be >= 0, got {group[name]}")
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")

    def update(self, p, grad, state, group):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            grad = grad + wd * p.data
        if momentum:
            # Starting from zero makes the first velocity exactly g, as PyTorch's.
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = np.zeros_like(p.data)
            velocity = state["momentum_buffer"]
            velocity *= momentum
            velocity += grad
            grad = grad + momentum * velocity if group["nesterov"] else velocity
        p.data -= lr * grad
