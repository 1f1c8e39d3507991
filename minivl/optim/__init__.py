"""Optimizers, learning-rate schedules and gradient clipping, as in ``torch.optim``.

    opt = AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    sched = WarmupCosineLR(opt, total_steps=1000, warmup_steps=100)
    for batch in batches:
        loss = model(batch); loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step(); opt.zero_grad(); sched.step()

Checkpoint: ``minivl.io.save(flatten_state_dict(opt.state_dict()), path)``;
restore: ``opt.load_state_dict(unflatten_state_dict(minivl.io.load(path)))``.
"""

from minivl.optim.adam import Adam, AdamW
from minivl.optim.grad_clip import clip_grad_norm
from minivl.optim.optimizer import Optimizer, flatten_state_dict, unflatten_state_dict
from minivl.optim.schedules import WarmupCosineLR, warmup_cosine
from minivl.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "WarmupCosineLR",
    "clip_grad_norm",
    "flatten_state_dict",
    "unflatten_state_dict",
    "warmup_cosine",
]
