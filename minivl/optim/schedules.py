"""Learning-rate schedules: linear warm-up, then cosine decay (Loshchilov & Hutter, 2017, SGDR).

Warm-up matters for Adam on transformers: in the first steps v_hat rests on a
handful of gradients, so updates are noisy and large; ramping the lr from 0
keeps them small until the moments settle (used by BERT, GPT, ViT and CLIP).
The cosine then anneals smoothly to ``min_lr`` by ``total_steps``:

    step < warmup:        lr = base_lr * step / warmup_steps
    warmup <= step < T:   lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2
                          progress = (step - warmup_steps) / (T - warmup_steps)
    step >= T:            lr = min_lr

This is the schedule of ``transformers.get_cosine_with_min_lr_schedule_with_warmup``.
"""

from __future__ import annotations

import math


def warmup_cosine(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    """The learning rate at ``step`` (0-based) of a warm-up + cosine schedule."""
    if not 0 <= warmup_steps <= total_steps or total_steps <= 0:
        raise ValueError(
            f"warmup_cosine: need 0 <= warmup_steps <= total_steps and total_steps > 0,"
            f" got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if step < 0:
        raise ValueError(f"warmup_cosine: step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


class WarmupCosineLR:
    """Drives an optimizer's learning rates along ``warmup_cosine``.

    Each group follows the schedule from its own base lr (the lr it had when
    the scheduler was made, kept in the group as ``"initial_lr"`` so it survives
    an optimizer checkpoint). ``min_lr`` is one number or one per group. The lr
    for step 0 is set at once; call ``step()`` after every ``optimizer.step()``.
    """

    def __init__(self, optimizer, total_steps, warmup_steps=0, min_lr=0.0):
        groups = optimizer.param_groups
        min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * len(groups)
        if len(min_lrs) != len(groups):
            raise ValueError(f"min_lr has {len(min_lrs)} values for {len(groups)} parameter groups")
        warmup_cosine(0, total_steps, warmup_steps, 0.0)  # validates the step counts
        self.optimizer = optimizer
        self.total_steps, self.warmup_steps, self.min_lrs = total_steps, warmup_steps, min_lrs
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.last_step = 0
        self._apply()

    @property
    def base_lrs(self):
        return [group["initial_lr"] for group in self.optimizer.param_groups]

    def get_lr(self):
        """The learning rate of each group at the current step."""
        return [
            warmup_cosine(self.last_step, self.total_steps, self.warmup_steps, base, low)
            for base, low in zip(self.base_lrs, self.min_lrs)
        ]

    def step(self):
        self.last_step += 1
        self._apply()

    def state_dict(self):
        return {"last_step": self.last_step}

    def load_state_dict(self, state_dict):
        self.last_step = int(state_dict["last_step"])
        self._apply()

    def _apply(self):
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
