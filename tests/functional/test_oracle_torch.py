"""Every differentiable op against PyTorch (forward values and input gradients),
in float64. Skipped when torch is not installed."""

from __future__ import annotations

import numpy as np
import pytest

import minivl as mv
from minivl import functional as F

torch = pytest.importorskip("torch")
tF = torch.nn.functional
pytestmark = pytest.mark.oracle

rng = np.random.default_rng(0)
X = rng.standard_normal((3, 4, 5))
POS = np.abs(X) + 0.5
W5 = rng.standard_normal(5)
B5 = rng.standard_normal(5)
M = rng.standard_normal((5, 2))
LBL = rng.integers(0, 5, (3, 4))
LBL[0, 0] = -100
SOFT = rng.random((3, 4, 5))
MASK = rng.random((3, 4, 5)) > 0.5
IMG = rng.standard_normal((2, 3, 6, 6))
KER = rng.standard_normal((4, 3, 3, 3))
Q = rng.standard_normal((2, 2, 4, 3))
KPM = np.array([[True, True, False, True], [True, False, False, True]])

CASES = {
    # name: (minivl fn, torch fn, inputs)
    "add": (lambda a, b: a + b, lambda a, b: a + b, [X, W5]),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [X, POS]),
    "pow": (lambda a: a**3, lambda a: a**3, [X]),
    "exp_log_sqrt": (lambda a: F.log(a) + F.sqrt(a) + F.exp(a), lambda a: a.log() + a.sqrt() + a.exp(), [POS]),
    "tanh_sigmoid_relu": (lambda a: F.tanh(a) * F.sigmoid(a) + F.relu(a), lambda a: a.tanh() * a.sigmoid() + a.relu(), [X]),
    "gelu": (F.gelu, tF.gelu, [X]),
    "gelu_tanh": (lambda a: F.gelu(a, "tanh"), lambda a: tF.gelu(a, approximate="tanh"), [X]),
    "quick_gelu": (F.quick_gelu, lambda a: a * torch.sigmoid(1.702 * a), [4 * X]),  # CLIP
    "sum_mean_max_var": (
        lambda a: a.sum(axis=1) + a.mean(axis=1) + a.max(axis=1) + a.var(axis=1),
        lambda a: a.sum(1) + a.mean(1) + a.amax(1) + a.var(1, unbiased=False), [X]),
    "matmul": (F.matmul, torch.matmul, [X, M]),
    "transpose_reshape_index": (
        lambda a: a.permute(2, 0, 1).reshape(5, 12)[[0, 2, 2], 1:7],
        lambda a: a.permute(2, 0, 1).reshape(5, 12)[[0, 2, 2], 1:7], [X]),
    "concat_split": (
        lambda a: F.concat(F.split(a, [2, 3], axis=-1)[::-1], axis=-1),
        lambda a: torch.cat(torch.split(a, [2, 3], dim=-1)[::-1], dim=-1), [X]),
    "where": (lambda a, b: F.where(MASK, a, b), lambda a, b: torch.where(torch.tensor(MASK), a, b), [X, POS]),
    "softmax": (lambda a: F.softmax(a, axis=1), lambda a: a.softmax(1), [X]),
    "log_softmax": (F.log_softmax, lambda a: a.log_softmax(-1), [X]),
    "layer_norm": (F.layer_norm, lambda a, w, b: tF.layer_norm(a, (5,), w, b), [X, W5, B5]),
    "cross_entropy": (
        lambda a: F.cross_entropy(a, LBL, label_smoothing=0.1),
        lambda a: tF.cross_entropy(a.reshape(12, 5), torch.tensor(LBL).reshape(12), label_smoothing=0.1), [X]),
    "bce_logits": (
        lambda a: F.binary_cross_entropy_with_logits(a, SOFT),
        lambda a: tF.binary_cross_entropy_with_logits(a, torch.tensor(SOFT)), [X]),
    "kl_div": (
        lambda a: F.kl_div(F.log_softmax(a), np.exp(np.log(SOFT) - np.log(SOFT.sum(-1, keepdims=True))), reduction="none"),
        lambda a: tF.kl_div(a.log_softmax(-1), torch.tensor(SOFT / SOFT.sum(-1, keepdims=True)), reduction="none").sum(-1), [X]),
    "l2_normalize": (F.l2_normalize, lambda a: tF.normalize(a, dim=-1), [X]),
    "conv2d": (
        lambda a, w: F.conv2d(a, w, stride=2, padding=1),
        lambda a, w: tF.conv2d(a, w, stride=2, padding=1), [IMG, KER]),
    "conv_transpose2d": (
        lambda a, w: F.conv_transpose2d(a, w, stride=2, padding=1),
        lambda a, w: tF.conv_transpose2d(a, w, stride=2, padding=1), [IMG[:, :, :4, :4], KER[:3]]),
    "pool_upsample": (
        lambda a: F.max_pool2d(a, 2) + F.avg_pool2d(a, 2) + F.avg_pool2d(F.upsample_nearest(a, 2), 4),
        lambda a: tF.max_pool2d(a, 2) + tF.avg_pool2d(a, 2) + tF.avg_pool2d(tF.interpolate(a, scale_factor=2, mode="nearest"), 4),
        [IMG]),
    "embedding": (
        lambda w: F.embedding(np.array([[0, 2, 2]]), w), lambda w: tF.embedding(torch.tensor([[0, 2, 2]]), w), [M]),
    "sdpa_causal": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True),
        lambda q, k, v: tF.scaled_dot_product_attention(q, k, v, is_causal=True), [Q, Q * 0.5, Q + 1]),
    "sdpa_padding": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, key_padding_mask=KPM),
        lambda q, k, v: tF.scaled_dot_product_attention(q, k, v, attn_mask=torch.tensor(KPM)[:, None, None, :]),
        [Q, Q * 0.5, Q + 1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_against_torch(name):
    ours, theirs, inputs = CASES[name]
    mv_in = [mv.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in inputs]
    th_in = [torch.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in inputs]
    out, ref = ours(*mv_in), theirs(*th_in)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-9, atol=1e-10)
    seed = np.cos(np.arange(out.size)).reshape(out.shape)
    out.backward(seed)
    ref.backward(torch.tensor(seed))
    for i, (a, b) in enumerate(zip(mv_in, th_in)):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-9, err_msg=f"input {i}")
