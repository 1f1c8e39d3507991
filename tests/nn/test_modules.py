"""Modules: registration, state_dict round trips (through safetensors), strict
loading errors, train/eval, freezing, and the layers' math."""

from __future__ import annotations

import numpy as np
import pytest

import minivl as mv
from minivl import functional as F
from minivl import nn
from minivl.testing import gradcheck


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.block = nn.TransformerBlock(8, 2)
        self.head = nn.Linear(8, 10)
        self.head.weight = self.emb.weight  # tied, as GPT's output head
        self.register_buffer("pos", np.arange(4))

    def forward(self, ids):
        return self.head(self.block(self.emb(ids), causal=True))


def test_named_parameters_and_tied_weights():
    m = Tiny()
    names = [n for n, _ in m.named_parameters()]
    assert "emb.weight" in names and "block.attn.q_proj.weight" in names
    assert "head.weight" not in names  # the tied weight is listed once
    assert len(names) == len(set(names))
    assert m.num_parameters() == sum(p.size for p in m.parameters())
    assert "parameters" in repr(m)


def test_state_dict_roundtrip_safetensors_bit_exact(tmp_path):
    from minivl.io import load, save

    m = Tiny()
    path = tmp_path / "tiny.safetensors"
    save(m.state_dict(), path)
    mv.manual_seed(123)
    m2 = Tiny()
    m2.load_state_dict(load(path))
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(m(ids).data, m2(ids).data)


def test_load_state_dict_reports_every_problem():
    m = Tiny()
    sd = m.state_dict()
    del sd["block.ln_1.weight"]
    sd["extra.weight"] = np.zeros(3)
    sd["head.bias"] = np.zeros(11)
    with pytest.raises(ValueError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: block.ln_1.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "head.bias: checkpoint (11,) vs model (10,)" in msg
    sd["head.bias"] = np.zeros(10)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["block.ln_1.weight"] and unexpected == ["extra.weight"]


def test_train_eval_switches_dropout():
    d = nn.Sequential(nn.Identity(), nn.Dropout(0.5))
    x = mv.tensor(np.ones((64, 32), np.float32))
    mv.manual_seed(0)
    y = d(x).data  # a fresh module trains: about half the entries dropped, the rest scaled by 2
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6
    d.eval()
    assert not d[1].training
    np.testing.assert_array_equal(d(x).data, x.data)  # eval: the identity
    d.train()
    assert d[1].training and (d(x).data == 0).any()


def test_freezing_skips_gradients():
    m = Tiny()
    m.block.requires_grad_(False)
    m(np.array([[1, 2]])).sum().backward()
    assert all(p.grad is None for p in m.block.parameters())
    assert m.emb.weight.grad is not None
    assert m.num_parameters(trainable_only=True) < m.num_parameters()


def test_layer_gradients():
    mv.manual_seed(0)
    lin = nn.Linear(3, 2)
    ln = nn.LayerNorm(2)
    for p in lin.parameters() + ln.parameters():
        p.data = p.data.astype(np.float64)
    x = mv.tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    gradcheck(lambda t, w, b, g, be: F.layer_norm(F.linear(t, w, b), g, be), x, lin.weight, lin.bias, ln.weight, ln.bias)


def test_multihead_attention_matches_a_manual_computation():
    mv.manual_seed(0)
    mha = nn.MultiHeadAttention(8, 2, kv_dim=6)  # cross-attention between different widths
    x = np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32)
    c = np.random.default_rng(2).standard_normal((2, 5, 6)).astype(np.float32)
    with nn.record(mha) as rec:
        out = mha(mv.tensor(x), mv.tensor(c))
    w = rec.weights[0]
    q = x @ mha.q_proj.weight.data.T + mha.q_proj.bias.data
    k = c @ mha.k_proj.weight.data.T + mha.k_proj.bias.data
    v = c @ mha.v_proj.weight.data.T + mha.v_proj.bias.data
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        s = q[..., sl] @ k[..., sl].transpose(0, 2, 1) / 2.0
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_allclose(w.data[:, h], p, rtol=1e-5, atol=1e-6)
        heads.append(p @ v[..., sl])
    ref = np.concatenate(heads, -1) @ mha.out_proj.weight.data.T + mha.out_proj.bias.data
    np.testing.assert_allclose(out.data, ref, rtol=1e-4, atol=1e-5)


def test_kv_cache_matches_full_causal_pass():
    mv.manual_seed(0)
    stack = nn.Transformer(8, 2, 2)
    x = mv.tensor(np.random.default_rng(0).standard_normal((1, 6, 8)).astype(np.float32))
    full = stack(x, causal=True).data
    caches = [{} for _ in range(2)]
    steps = [stack(x[:, :3], causal=True, caches=caches)]
    for t in range(3, 6):
        steps.append(stack(x[:, t : t + 1], causal=True, caches=caches))
    np.testing.assert_allclose(np.concatenate([s.data for s in steps], 1), full, rtol=1e-5, atol=1e-5)


def test_pre_and_post_ln_blocks_differ_as_documented():
    mv.manual_seed(0)
    blk = nn.TransformerBlock(4, 1, norm_first=False)
    x = mv.tensor(np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32))
    y = blk(x).data
    # post-LN: the output is a LayerNorm output, so each row has zero mean
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)


def test_record_keeps_hidden_states_and_weights_and_changes_nothing():
    mv.manual_seed(0)
    stack = nn.Transformer(8, 3, 2)
    x = mv.tensor(np.random.default_rng(0).standard_normal((1, 4, 8)).astype(np.float32))
    plain = stack(x, causal=True)
    assert stack.last_hidden is None and stack.blocks[0].attn.last_weights is None  # off by default
    with nn.record(stack) as rec:
        out = stack(x, causal=True)
        assert len(rec.weights) == 3  # readable inside the block too
    assert len(rec.hidden) == 4 and len(rec.weights) == 3
    assert rec.weights[0].shape == (1, 2, 4, 4)
    np.testing.assert_allclose(np.triu(rec.weights[1].data[0, 0], 1), 0)  # causal: no future
    np.testing.assert_array_equal(rec.hidden[0].data, x.data)
    np.testing.assert_array_equal(rec.hidden[-1].data, out.data)
    np.testing.assert_array_equal(out.data, plain.data)
    # leaving the block switches recording off and frees the modules, the recording keeps its values
    assert not stack.recording and stack.last_hidden is None and stack.blocks[2].attn.last_weights is None
    stack(x)
    assert rec.weights[0].shape == (1, 2, 4, 4)
    two = nn.Sequential(nn.Transformer(8, 1, 2), nn.Transformer(8, 1, 2))
    with nn.record(two) as rec:
        two(x)
    assert len(rec.weights) == 2
    with pytest.raises(ValueError, match="exactly one transformer stack"):
        _ = rec.hidden
    with pytest.raises(ValueError, match="no attention layer"):
        nn.record(nn.Linear(2, 2))


def test_conv2d_module_and_errors():
    conv = nn.Conv2d(3, 5, 4, stride=4)
    y = conv(mv.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    assert y.shape == (2, 5, 2, 2)
    with pytest.raises(ValueError, match="channels"):
        conv(mv.tensor(np.zeros((2, 1, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="activation"):
        nn.MLP(4, 8, activation="swish2")


def test_block_mlp_width_can_be_set_exactly():
    assert nn.TransformerBlock(8, 2).mlp.fc1.out_features == 32
    assert nn.TransformerBlock(8, 2, mlp_dim=37).mlp.fc1.out_features == 37
