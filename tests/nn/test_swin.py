"""Swin's shifted windows (minivl/nn/swin.py) against a direct transcription of
the paper's math: windows cut by loops, the mask from a brute-force rule, a
whole shifted block recomputed token by token in NumPy; gradients checked in
float64."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import erf

import minivl as mv
from minivl.nn.swin import (
    PatchMerging,
    SwinBlock,
    SwinStage,
    WindowAttention,
    cyclic_shift,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from minivl.testing import gradcheck


def _f64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_window_partition_cuts_windows_row_by_row_and_reverses():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 9, 3))
    w = window_partition(mv.tensor(x), 3).data
    assert w.shape == (2 * 2 * 3, 9, 3)
    for b in range(2):
        for wi in range(2):
            for wj in range(3):
                window = w[b * 6 + wi * 3 + wj]
                for t in range(9):  # token t of the window: row t // 3, column t % 3
                    np.testing.assert_array_equal(window[t], x[b, 3 * wi + t // 3, 3 * wj + t % 3])
    np.testing.assert_array_equal(window_reverse(mv.tensor(w), 3, 6, 9).data, x)


def test_window_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"6x9.*window_size 4"):
        window_partition(mv.tensor(np.zeros((1, 6, 9, 2))), 4)
    with pytest.raises(ValueError, match="window_reverse"):
        window_reverse(mv.tensor(np.zeros((5, 4, 2))), 2, 4, 4)


def test_cyclic_shift_is_a_roll_with_the_opposite_roll_as_gradient():
    rng = np.random.default_rng(1)
    x = mv.tensor(rng.standard_normal((1, 4, 6, 2)), requires_grad=True)
    np.testing.assert_array_equal(cyclic_shift(x, -2).data, np.roll(x.data, (-2, -2), axis=(1, 2)))
    gradcheck(lambda t: cyclic_shift(t, -1) * mv.tensor(np.arange(48.0).reshape(1, 4, 6, 2)), x)


def _brute_force_mask(H, W, M, s):
    """Token a may attend to token b (both in the rolled frame, same window) iff
    no wrap-around separates them: their displacement in the rolled frame is
    their displacement in the image."""
    nW = (H // M) * (W // M)
    allowed = np.zeros((nW, M * M, M * M), bool)
    for wi in range(H // M):
        for wj in range(W // M):
            cells = [(wi * M + t // M, wj * M + t % M) for t in range(M * M)]
            for a, (ya, xa) in enumerate(cells):
                for b, (yb, xb) in enumerate(cells):
                    oa = ((ya + s) % H, (xa + s) % W)  # where the token sat in the image
                    ob = ((yb + s) % H, (xb + s) % W)
                    allowed[wi * (W // M) + wj, a, b] = (oa[0] - ob[0], oa[1] - ob[1]) == (ya - yb, xa - xb)
    return allowed


@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([2, 3, 4]), st.data())
def test_shifted_window_mask_equals_the_brute_force_rule(nh, nw, M, data):
    s = data.draw(st.integers(0, M - 1))
    H, W = nh * M, nw * M
    np.testing.assert_array_equal(shifted_window_mask(H, W, M, s), _brute_force_mask(H, W, M, s))


def test_shifted_window_mask_rejects_a_bad_shift():
    with pytest.raises(ValueError, match="shift"):
        shifted_window_mask(8, 8, 4, 4)


def test_relative_position_index_numbers_each_offset_once():
    M = 3
    idx = relative_position_index(M)
    seen = {}
    for a in range(M * M):
        for b in range(M * M):
            offset = (a // M - b // M, a % M - b % M)
            assert seen.setdefault(offset, idx[a, b]) == idx[a, b]  # one row per offset
    assert len(set(seen.values())) == (2 * M - 1) ** 2 and idx.max() == (2 * M - 1) ** 2 - 1


def _window_attention_reference(attn, x, mask):
    """softmax(Q K^T / sqrt(d) + B [+ -inf where masked]) V, window by window, head by head."""
    Bw, N, C = x.shape
    H, hd, M = attn.num_heads, attn.head_dim, attn.window_size
    qkv = x @ attn.qkv.weight.data.T + attn.qkv.bias.data
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    table = attn.relative_position_bias.table.data
    out = np.zeros_like(x)
    for w in range(Bw):
        for h in range(H):
            sl = slice(h * hd, (h + 1) * hd)
            s = q[w, :, sl] @ k[w, :, sl].T / math.sqrt(hd)
            for a in range(N):
                for b in range(N):
                    dy, dx = a // M - b // M, a % M - b % M
                    s[a, b] += table[(dy + M - 1) * (2 * M - 1) + dx + M - 1, h]
                    if mask is not None and not mask[w % mask.shape[0], a, b]:
                        s[a, b] = -np.inf
            out[w, :, sl] = _softmax(s) @ v[w, :, sl]
    return out @ attn.proj.weight.data.T + attn.proj.bias.data


def test_window_attention_matches_its_formula():
    mv.manual_seed(0)
    attn = _f64(WindowAttention(8, 2, 2))
    attn.relative_position_bias.table.data = np.random.default_rng(2).standard_normal((9, 2))
    x = np.random.default_rng(3).standard_normal((2 * 4, 4, 8))
    mask = shifted_window_mask(4, 4, 2, 1)
    np.testing.assert_allclose(attn(mv.tensor(x), mask).data, _window_attention_reference(attn, x, mask), atol=1e-12)
    np.testing.assert_allclose(attn(mv.tensor(x)).data, _window_attention_reference(attn, x, None), atol=1e-12)


def test_swin_block_with_shift_matches_a_token_by_token_transcription():
    """Every output token, computed in image coordinates: token p attends to the
    tokens of its shifted window that are its true neighbours (no wrap)."""
    mv.manual_seed(0)
    H = W = 4
    M, s, C = 2, 1, 4
    block = _f64(SwinBlock(C, (H, W), 2, window_size=M, shift=s, mlp_ratio=2.0))
    block.attn.relative_position_bias.table.data = np.random.default_rng(4).standard_normal((9, 2))
    x = np.random.default_rng(5).standard_normal((1, H, W, C))
    h = _ln(x, block.ln_1.weight.data, block.ln_1.bias.data)
    rolled = np.roll(h, (-s, -s), axis=(1, 2))
    windows = window_partition(mv.tensor(rolled), M).data
    mask = _brute_force_mask(H, W, M, s)
    attended = window_reverse(mv.tensor(_window_attention_reference(block.attn, windows, mask)), M, H, W).data
    x1 = x + np.roll(attended, (s, s), axis=(1, 2))
    m = block.mlp
    hidden = _gelu(_ln(x1, block.ln_2.weight.data, block.ln_2.bias.data) @ m.fc1.weight.data.T + m.fc1.bias.data)
    expected = x1 + hidden @ m.fc2.weight.data.T + m.fc2.bias.data
    np.testing.assert_allclose(block(mv.tensor(x)).data, expected, atol=1e-12)


def test_patch_merging_matches_its_formula():
    mv.manual_seed(0)
    pm = _f64(PatchMerging(3))
    x = np.random.default_rng(6).standard_normal((2, 4, 6, 3))
    out = pm(mv.tensor(x)).data
    assert out.shape == (2, 2, 3, 6)
    for i in range(2):
        for j in range(3):
            cat = np.concatenate([x[:, 2 * i, 2 * j], x[:, 2 * i + 1, 2 * j], x[:, 2 * i, 2 * j + 1],
                                  x[:, 2 * i + 1, 2 * j + 1]], -1)
            ref = _ln(cat, pm.norm.weight.data, pm.norm.bias.data) @ pm.reduction.weight.data.T
            np.testing.assert_allclose(out[:, i, j], ref, atol=1e-12)


def test_window_attention_gradcheck_with_mask_and_bias():
    mv.manual_seed(0)
    attn = _f64(WindowAttention(4, 2, 2))
    x = mv.tensor(np.random.default_rng(7).standard_normal((4, 4, 4)), requires_grad=True)
    mask = shifted_window_mask(4, 4, 2, 1)
    params = attn.parameters()
    gradcheck(lambda t, *ps: attn(t, mask), x, *params)


def test_swin_stage_gradcheck_shifted_block_and_merging():
    mv.manual_seed(0)
    stage = _f64(SwinStage(4, (4, 4), depth=2, num_heads=1, window_size=2, mlp_ratio=1.0, downsample=True))
    assert stage.blocks[1].shift == 1
    x = mv.tensor(np.random.default_rng(8).standard_normal((1, 4, 4, 4)), requires_grad=True)
    gradcheck(lambda t, *ps: stage(t), x, *stage.parameters())


def test_small_grid_is_one_unshifted_window():
    block = SwinBlock(4, (2, 2), 1, window_size=4, shift=2)
    assert (block.window_size, block.shift) == (2, 0)
    with pytest.raises(ValueError, match=r"\(B, 2, 2, C\)"):
        block(mv.tensor(np.zeros((1, 4, 4, 4), np.float32)))
