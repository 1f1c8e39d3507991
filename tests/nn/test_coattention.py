"""The co-attention block (minivl/nn/coattention.py, S06) against a plain NumPy
transcription of ViLBERT's layer: each stream's Q, K, V; words attend over
regions and regions over words; dense + residual + LayerNorm per stream, then
each stream's feed-forward with residual + LayerNorm. Gradients in float64."""

import math

import numpy as np
import pytest

import minivl as mv
from minivl import nn
from minivl.testing import gradcheck


def _f64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def _ln(x, ln, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * ln.weight.data + ln.bias.data


def _lin(x, layer):
    return x @ layer.weight.data.T + layer.bias.data


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _attend(queries, keys, values, heads, key_mask):
    """softmax(Q K^T / sqrt(hd)) V per head, written out per example and head."""
    B, Nq, C = queries.shape
    hd = C // heads
    out = np.zeros_like(queries)
    for b in range(B):
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            scores = queries[b, :, sl] @ keys[b, :, sl].T / math.sqrt(hd)  # (Nq, Nk)
            scores = np.where(key_mask[b][None, :], scores, -np.inf)
            p = np.exp(scores - scores.max(-1, keepdims=True))
            out[b, :, sl] = (p / p.sum(-1, keepdims=True)) @ values[b, :, sl]
    return out


def _reference(block, text, visual, text_mask, visual_mask, heads):
    t, v = block.text, block.visual
    # each stream's own projections into the co-attention width
    q_text, k_vis, v_vis = _lin(text, t.attn.q_proj), _lin(visual, t.attn.k_proj), _lin(visual, t.attn.v_proj)
    q_vis, k_text, v_text = _lin(visual, v.attn.q_proj), _lin(text, v.attn.k_proj), _lin(text, v.attn.v_proj)
    words_over_regions = _attend(q_text, k_vis, v_vis, heads, visual_mask)
    regions_over_words = _attend(q_vis, k_text, v_text, heads, text_mask)
    text_1 = _ln(text + _lin(words_over_regions, t.attn.out_proj), t.ln_1)
    visual_1 = _ln(visual + _lin(regions_over_words, v.attn.out_proj), v.ln_1)
    text_2 = _ln(text_1 + _lin(_gelu(_lin(text_1, t.mlp.fc1)), t.mlp.fc2), t.ln_2)
    visual_2 = _ln(visual_1 + _lin(_gelu(_lin(visual_1, v.mlp.fc1)), v.mlp.fc2), v.ln_2)
    return text_2, visual_2


def _inputs(rng, B=2, T=5, N=4, Dt=8, Dv=6):
    text, visual = rng.standard_normal((B, T, Dt)), rng.standard_normal((B, N, Dv))
    text_mask = np.ones((B, T), bool)
    text_mask[-1, 3:] = False
    visual_mask = np.ones((B, N), bool)
    visual_mask[0, 2:] = False
    return text, visual, text_mask, visual_mask


def _randomise(block, rng):
    for p in block.parameters():  # LayerNorm scales off 1 so the transcription must use them
        p.data[...] = rng.standard_normal(p.shape) * 0.5 + (1.0 if p.ndim == 1 and p.size in (8, 6) else 0.0)


@pytest.mark.parametrize("co_dim, heads", [(4, 2), (12, 3)])
def test_co_attention_matches_its_transcription(co_dim, heads):
    mv.manual_seed(0)
    rng = np.random.default_rng(1)
    block = _f64(nn.CoAttentionBlock(8, 6, heads, co_dim=co_dim, text_mlp_dim=10, visual_mlp_dim=7)).eval()
    _randomise(block, rng)
    text, visual, text_mask, visual_mask = _inputs(rng)
    got_text, got_visual = block.exchange(mv.tensor(text), mv.tensor(visual), text_mask, visual_mask)
    want_text, want_visual = _reference(block, text, visual, text_mask, visual_mask, heads)
    np.testing.assert_allclose(got_text.data, want_text, atol=1e-10)
    np.testing.assert_allclose(got_visual.data, want_visual, atol=1e-10)


def test_padding_of_one_stream_is_invisible_to_the_other():
    mv.manual_seed(0)
    rng = np.random.default_rng(2)
    block = _f64(nn.CoAttentionBlock(8, 6, 2, co_dim=4)).eval()
    text, visual, text_mask, visual_mask = _inputs(rng)
    before = block.exchange(mv.tensor(text), mv.tensor(visual), text_mask, visual_mask)
    visual[~visual_mask] = 100.0  # garbage in the padded regions
    text[~text_mask] = -50.0  # and in the padded words
    after = block.exchange(mv.tensor(text), mv.tensor(visual), text_mask, visual_mask)
    np.testing.assert_allclose(after[0].data[text_mask], before[0].data[text_mask], atol=1e-12)
    np.testing.assert_allclose(after[1].data[visual_mask], before[1].data[visual_mask], atol=1e-12)


def test_co_attention_gradcheck_float64():
    mv.manual_seed(0)
    rng = np.random.default_rng(3)
    block = _f64(nn.CoAttentionBlock(4, 6, 2, co_dim=4, text_mlp_dim=5, visual_mlp_dim=3)).eval()
    text, visual, text_mask, visual_mask = _inputs(rng, B=1, T=3, N=3, Dt=4, Dv=6)
    text_mask[0, 2] = visual_mask[0, 2] = False
    t = mv.tensor(text, requires_grad=True)
    v = mv.tensor(visual, requires_grad=True)

    def both(t, v, *params):
        new_t, new_v = block.exchange(t, v, text_mask, visual_mask)
        return mv.functional.concat([new_t.reshape(-1), new_v.reshape(-1)], axis=0)

    gradcheck(both, t, v, *block.parameters())


def test_errors_name_the_shapes_and_forward_points_to_exchange():
    block = nn.CoAttentionBlock(8, 6, 2, co_dim=4)
    with pytest.raises(ValueError, match=r"should end in 8"):
        block.exchange(mv.tensor(np.zeros((1, 3, 6), np.float32)), mv.tensor(np.zeros((1, 2, 6), np.float32)))
    with pytest.raises(TypeError, match="exchange"):
        block(None, None)
    with pytest.raises(ValueError, match="co_dim=5"):
        nn.CoAttentionBlock(8, 6, 2, co_dim=5)
