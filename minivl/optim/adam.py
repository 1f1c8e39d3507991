"""Adam (Kingma & Ba, 2015, ICLR, Algorithm 1) and AdamW (Loshchilov & Hutter, 2019, ICLR).

For each parameter, with t counting its own steps:

    m = beta1 * m + (1 - beta1) * g             running mean of gradients
    v = beta2 * v + (1 - beta2) * g**2          running mean of squared gradients
    m_hat = m / (1 - beta1**t)                  bias correction: m and v start at 0,
    v_hat = v / (1 - beta2**t)                  so early averages are too small
    p -= lr * m_hat / (sqrt(v_hat) + eps)

Weight decay is where the two differ. Adam adds the L2 penalty's gradient
``weight_decay * p`` to g, so the decay is rescaled by 1/sqrt(v_hat) like any
gradient, and parameters with large gradients are barely decayed. AdamW
*decouples* it: ``p -= lr * weight_decay * p`` before the Adam step, the same
shrinkage for every parameter. Both follow PyTorch's ``torch.optim`` exactly,
including eps outside the square root.
"""

from __future__ import annotations

import numpy as np

from minivl.optim.optimizer import Optimizer


class Adam(Optimizer):
    state_arrays = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check_hyperparameters(self, group):
        name = type(self).__name__
        for key in ("lr", "eps", "weight_decay"):
            if not group[key] >= 0:
                raise ValueError(f"{name}: {key} must be >= 0, got {group[key]}")
        betas = tuple(group["betas"])
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {group['betas']}")

    def decay(self, p, grad, group):
        """Adam's weight decay: the L2 penalty's gradient joins the loss gradient."""
        return grad + group["weight_decay"] * p.data if group["weight_decay"] else grad

    def update(self, p, grad, state, group):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)  # m
            state["exp_avg_sq"] = np.zeros_like(p.data)  # v
        grad = self.decay(p, grad, group)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p.data -= lr * m_hat / (np.sqrt(v_hat) + eps)


class AdamW(Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def decay(self, p, grad, group):
        """Decoupled weight decay: shrink p itself, leave the gradient alone."""
        p.data *= 1 - group["lr"] * group["weight_decay"]
        return grad
