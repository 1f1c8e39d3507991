"""Loss functions: cross-entropy (MLM / LM / CLIP), binary cross-entropy with
logits (VQA soft scores, alignment), and KL divergence (ViLBERT's masked
regions, S08)."""

from __future__ import annotations

import numpy as np

from minivl import backend
from minivl.device import asarray, like
from minivl.functional._util import check_float
from minivl.functional.elementwise import mul, sub
from minivl.functional.reduce import mean as _mean
from minivl.functional.reduce import sum as _sum
from minivl.tensor import Function, Tensor, array_module


class CrossEntropy(Function):
    """Per-position cross-entropy on logits ``(..., C)`` in one node.

    With p = softmax(x) and smoothing e, the loss at a position with target t is
    -(1 - e) log p_t - e mean_j log p_j, and its gradient is the famous
    p - (1 - e) onehot(t) - e / C: no need to differentiate through log_softmax.
    Ignored positions get zero loss and zero gradient.
    """

    @staticmethod
    def forward(ctx, logits, target, valid, smoothing):
        logp = backend.for_array(logits).log_softmax_forward(logits)  # (..., C)
        safe = np.where(valid, target, 0)
        nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        if smoothing:
            nll = (1.0 - smoothing) * nll - smoothing * logp.mean(axis=-1)
        ctx.save_for_backward(logp, safe, valid)
        ctx.smoothing = smoothing
        return np.where(valid, nll, 0).astype(logits.dtype)

    @staticmethod
    def backward(ctx, g):
        logp, safe, valid = ctx.saved
        e = ctx.smoothing
        grad = np.exp(logp)  # softmax
        if e:
            grad -= e / logp.shape[-1]
        np.put_along_axis(grad, safe[..., None], np.take_along_axis(grad, safe[..., None], -1) - (1.0 - e), -1)
        return grad * (g * valid)[..., None].astype(grad.dtype)


def cross_entropy(logits, target, axis=-1, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Mean of -log softmax(logits)[target] over the positions not ignored.

    ``logits (..., C)`` (classes along ``axis``) and integer ``target (...)``.
    Positions whose target equals ``ignore_index`` count neither in the sum nor
    in the mean (BERT's unmasked tokens, LLaVA's instruction tokens). With
    ``label_smoothing`` = e the target is (1 - e) one-hot + e / C uniform.
    """
    check_float(logits, "cross_entropy: logits")
    target = target.data if isinstance(target, Tensor) else asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy target must hold integer class ids, got dtype {target.dtype}")
    target = like(target, logits.data)  # host labels meet device logits on the device
    if axis not in (-1, logits.ndim - 1):
        logits = logits.swapaxes(axis, -1)
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"cross_entropy: logits {logits.shape} (classes last) need target of shape "
            f"{logits.shape[:-1]}, got {target.shape}"
        )
    C = logits.shape[-1]
    valid = target != ignore_index
    if np.any((target[valid] < 0) | (target[valid] >= C)):
        raise ValueError(f"cross_entropy: target ids must be in [0, {C}) or ignore_index")
    nll = CrossEntropy.apply(logits, target=target, valid=valid, smoothing=float(label_smoothing))
    if reduction == "none":
        return nll
    if reduction == "sum":
        return _sum(nll)
    return _sum(nll) * (1.0 / max(int(valid.sum()), 1))


class BCEWithLogits(Function):
    """Elementwise BCE on logits: max(x, 0) - x t + log(1 + exp(-|x|)).

    One Function rather than composed ops, because its gradient sigmoid(x) - t
    is smooth everywhere, while the composed |x| has a kink at 0.
    """

    @staticmethod
    def forward(ctx, x, t):
        xp = array_module(x)
        ctx.save_for_backward(x, t)
        return xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved
        xp = array_module(x)
        e = xp.exp(-xp.abs(x))
        sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return g * (sig - t), (-g * x if ctx.needs_input_grad[1] else None)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """Binary cross-entropy on raw logits, stable for any magnitude.

    ``target`` may hold soft scores in [0, 1] (VQA's answer scores, S10).
    """
    t = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=logits.dtype))
    if t.shape != logits.shape:
        raise ValueError(f"bce: logits {logits.shape} and target {t.shape} must match")
    loss = BCEWithLogits.apply(logits, t)
    if reduction == "none":
        return loss
    return _sum(loss) if reduction == "sum" else _mean(loss)


def kl_div(log_q, p, axis=-1, reduction="batchmean"):
    """KL(p || q) = sum p (log p - log q), from the model's log-probabilities ``log_q``
    and the target distribution ``p`` (terms with p = 0 contribute 0).

    ``reduction='batchmean'`` sums over ``axis`` and averages over the rest;
    'none' returns the per-row KL.
    """
    p = p if isinstance(p, Tensor) else Tensor(p, dtype=log_q.dtype)  # host or device
    if p.shape != log_q.shape:
        raise ValueError(f"kl_div: log_q {log_q.shape} and p {p.shape} must match")
    pd = p.data
    xp = array_module(pd)
    log_p = Tensor(xp.where(pd > 0, xp.log(xp.where(pd > 0, pd, 1)), 0).astype(pd.dtype))
    per_row = _sum(mul(p, sub(log_p, log_q)), axis=axis)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return _sum(per_row)
    return _mean(per_row)
