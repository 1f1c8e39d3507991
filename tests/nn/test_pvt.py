"""PVT's spatial-reduction attention (minivl/nn/pvt.py) against a direct
transcription: the R x R patches of the map averaged through the conv weights
by loops, keys and values from them, attention written out; gradients checked
in float64."""

import math

import numpy as np
import pytest

import minivl as mv
from minivl.nn.pvt import PVTBlock, SpatialReductionAttention
from minivl.testing import gradcheck


def _f64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _reference(sra, x, grid, num_prefix):
    """Q from every token; K, V from [prefix tokens, LN(conv_R(map))]; per-head softmax."""
    B, N, C = x.shape
    H, W = grid
    R, nh, hd = sra.sr_ratio, sra.num_heads, sra.head_dim
    tokens = x[:, num_prefix:].reshape(B, H, W, C)
    reduced = []
    for i in range(H // R if R > 1 else 0):
        for j in range(W // R):
            patch = tokens[:, i * R:(i + 1) * R, j * R:(j + 1) * R, :]  # (B, R, R, C)
            # conv weight (C_out, C_in, R, R): out[o] = sum_{c, dy, dx} w[o, c, dy, dx] patch[dy, dx, c]
            reduced.append(np.einsum("ocyx,byxc->bo", sra.sr.weight.data, patch) + sra.sr.bias.data)
    source = np.stack(reduced, 1) if R > 1 else tokens.reshape(B, H * W, C)
    if R > 1:
        source = _ln(source, sra.norm.weight.data, sra.norm.bias.data)
    source = np.concatenate([x[:, :num_prefix], source], 1)
    q = x @ sra.q.weight.data.T + sra.q.bias.data
    kv = source @ sra.kv.weight.data.T + sra.kv.bias.data
    k, v = kv[..., :C], kv[..., C:]
    out = np.zeros_like(q)
    for h in range(nh):
        sl = slice(h * hd, (h + 1) * hd)
        s = q[..., sl] @ k[..., sl].transpose(0, 2, 1) / math.sqrt(hd)  # (B, N, Nk)
        p = np.exp(s - s.max(-1, keepdims=True))
        out[..., sl] = (p / p.sum(-1, keepdims=True)) @ v[..., sl]
    return out @ sra.proj.weight.data.T + sra.proj.bias.data


@pytest.mark.parametrize("sr_ratio, num_prefix", [(2, 0), (2, 1), (3, 1), (1, 0)])
def test_spatial_reduction_attention_matches_its_formula(sr_ratio, num_prefix):
    mv.manual_seed(0)
    sra = _f64(SpatialReductionAttention(8, 2, sr_ratio))
    grid = (6, 6)
    x = np.random.default_rng(1).standard_normal((2, num_prefix + 36, 8))
    np.testing.assert_allclose(sra(mv.tensor(x), grid, num_prefix).data, _reference(sra, x, grid, num_prefix),
                               atol=1e-12)


def test_keys_are_fewer_by_the_square_of_the_ratio():
    sra = SpatialReductionAttention(4, 1, sr_ratio=4)
    x = mv.tensor(np.zeros((1, 64, 4), np.float32))
    assert sra.reduce(x, (8, 8)).shape == (1, 4, 4)


def test_spatial_reduction_attention_gradcheck_with_cls():
    mv.manual_seed(0)
    block = _f64(PVTBlock(4, 2, sr_ratio=2, mlp_ratio=1.0))
    x = mv.tensor(np.random.default_rng(2).standard_normal((1, 1 + 16, 4)), requires_grad=True)
    gradcheck(lambda t, *ps: block(t, (4, 4), 1), x, *block.parameters())


def test_errors_name_the_shapes():
    sra = SpatialReductionAttention(4, 1, sr_ratio=3)
    with pytest.raises(ValueError, match=r"4x4 is not divisible by sr_ratio 3"):
        sra(mv.tensor(np.zeros((1, 16, 4), np.float32)), (4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1 \+ 4\*4, 4\)"):
        sra(mv.tensor(np.zeros((1, 16, 4), np.float32)), (4, 4), num_prefix=1)
