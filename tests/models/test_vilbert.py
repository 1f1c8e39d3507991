"""ViLBERT and its baselines (minivl/models/vilbert.py): shapes and input errors,
the visual embedding and pooler against their formulas, co-attention placement
(no co-attention = late fusion, exactly), who sees the image, BERT loading,
parameter matching, freezing, gradients in float64 and checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import minivl as mv
from minivl import nn, tiny
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.bert import BERT
from minivl.models.vilbert import (
    LOCATION_MEAN,
    LOCATION_STD,
    MODELS,
    LateFusion,
    SingleStream,
    ViLBERT,
    ViLBERTConfig,
    count_parameters,
    matched_config,
)
from minivl.optim import AdamW
from minivl.testing import gradcheck

TINY = tiny.vilbert_config()  # the same tiny model the backend tests train
V, FEAT = TINY.vocab_size, TINY.feat_dim


def inputs(seed=0, B=3, T=6, R=4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    text_mask = np.ones((B, T), bool)
    text_mask[0, 4:] = False
    feats = rng.standard_normal((B, 1 + R, FEAT)).astype(np.float32)
    locs = rng.random((B, 1 + R, 5)).astype(np.float32)
    region_mask = np.ones((B, 1 + R), bool)
    region_mask[1, 3:] = False
    return ids, text_mask, feats, locs, region_mask


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_model_has_the_same_outputs(kind):
    mv.manual_seed(0)
    model = MODELS[kind](TINY).eval()
    s = model.encode(*inputs())
    width = 16 if kind == "single_stream" else 12
    assert s.text.shape == (3, 6, 16) and s.visual.shape == (3, 5, width)
    assert s.pooled_text.shape == s.pooled_image.shape == (3, 8)
    assert model(*inputs()).shape == (3, 8)
    assert model.alignment_logits(s).shape == (3, 2)
    assert model.mlm_logits(s).shape == (3, 6, V)
    assert model.region_logits(s).shape == (3, 5, 6)


def test_bad_inputs_name_the_shapes():
    model = ViLBERT(TINY)
    ids, tm, feats, locs, rm = inputs()
    with pytest.raises(ValueError, match=r"feat_dim=10"):
        model.encode(ids, tm, feats[..., :5], locs, rm)
    with pytest.raises(ValueError, match=r"locs must be \(B, 1\+R, 5\)"):
        model.encode(ids, tm, feats, locs[:, :2], rm)
    with pytest.raises(ValueError, match=r"region_mask"):
        model.encode(ids, tm, feats, locs, rm[:, :2])
    with pytest.raises(ValueError, match=r"text_mask must have the shape of ids"):
        model.encode(ids, tm[:, :2], feats, locs, rm)
    with pytest.raises(ValueError, match="max_len=12"):
        model.encode(np.zeros((1, 13), np.int64), None, feats[:1], locs[:1], rm[:1])
    with pytest.raises(ValueError, match="co_attention_at"):
        ViLBERT(TINY, co_attention_at=((3, 0),))
    with pytest.raises(ValueError, match="increasing"):
        ViLBERT(TINY, co_attention_at=((2, 0), (1, 1)))


def _ln(x, ln, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * ln.weight.data + ln.bias.data


def test_visual_embedding_and_poolers_follow_their_formulas():
    mv.manual_seed(1)
    model = ViLBERT(TINY, co_attention_at=()).eval()
    ids, tm, feats, locs, rm = inputs(1)
    e = model.visual_embeddings
    c = 3.0  # the location: standardised per dimension, squashed by c * tanh(z / c)
    scaled = c * np.tanh((locs - np.array(TINY.location_mean)) / np.array(TINY.location_std) / c)
    want = _ln(feats @ e.feature.weight.data.T + e.feature.bias.data
               + scaled @ e.location.weight.data.T + e.location.bias.data, e.ln)
    np.testing.assert_allclose(e(mv.tensor(feats), mv.tensor(locs)).data, want, rtol=1e-4, atol=1e-5)
    s = model.encode(ids, tm, feats, locs, rm)
    p = model.visual_pooler
    np.testing.assert_allclose(s.pooled_image.data,
                               np.maximum(s.visual.data[:, 0] @ p.weight.data.T + p.bias.data, 0), atol=1e-6)
    np.testing.assert_allclose(s.fused.data, s.pooled_text.data * s.pooled_image.data, atol=1e-7)


def test_location_constants_are_the_reference_statistics():
    from minivl.data.regions import location_stats

    mean, std = location_stats()
    np.testing.assert_allclose(LOCATION_MEAN, mean, atol=2e-3)
    np.testing.assert_allclose(LOCATION_STD, std, atol=2e-3)


def _embedding_spread(config, seed=0):
    """Spread over regions of the feature and the location parts of the visual embedding
    (before LayerNorm), at initialisation, on standardised features and shapes-world boxes."""
    from minivl.data.boxes import location_features
    from minivl.data.world import ShapesWorld

    mv.manual_seed(seed)
    e = ViLBERT(config).visual_embeddings
    scenes = ShapesWorld(image_size=32, max_objects=3, seed=0).iid_scenes(200, "train", rng=np.random.default_rng(seed))
    locs = np.concatenate([location_features(s.boxes, 32) for s in scenes])[None]  # (1, N, 5)
    feats = np.random.default_rng(seed).standard_normal((*locs.shape[:2], config.feat_dim)).astype(np.float32)
    with mv.no_grad():
        f = e.feature(mv.tensor(feats)).data
        lo = e.location(e.scale_locations(mv.tensor(locs))).data
    return f[0].std(0).mean(), lo[0].std(0).mean()


def test_location_reaches_the_visual_embedding_at_the_feature_scale():
    """The planted bug of issue 12: raw 5-d locations through a Linear(5) at BERT's std 0.02
    made the location part ~14x smaller than the feature part, and position and size
    were lost in the visual stream. Standardised and with the matched init, the location
    part varies over regions at least half as much as the feature part."""
    feature, location = _embedding_spread(ViLBERTConfig())
    assert location > 0.5 * feature, (feature, location)
    raw = replace(ViLBERTConfig(), location_mean=(0,) * 5, location_std=(1,) * 5, location_clip=0,
                  location_init_std=0.02)  # the paper's input and init
    feature, location = _embedding_spread(raw)
    assert location < 0.15 * feature, (feature, location)


def test_img_location_is_squashed_into_the_clip():
    """[IMG]'s [0, 0, 1, 1, 1] is ~30 standard deviations out in area; it is squashed into (-3, 3),
    and the regions' locations are nearly unchanged by the squash."""
    e = ViLBERT(ViLBERTConfig()).visual_embeddings
    img = e.scale_locations(mv.tensor(np.array([[[0, 0, 1, 1, 1]]], np.float32))).data
    assert np.all(np.abs(img) <= 3) and img[0, 0, 4] > 2.9
    box = np.array([[[0.3, 0.4, 0.6, 0.7, 0.09]]], np.float32)
    z = (box - np.array(LOCATION_MEAN)) / np.array(LOCATION_STD)
    np.testing.assert_allclose(e.scale_locations(mv.tensor(box)).data, 3 * np.tanh(z / 3), rtol=1e-5)
    assert np.all(np.abs(e.scale_locations(mv.tensor(box)).data - z) < 0.05)


def test_without_co_attention_vilbert_is_late_fusion():
    mv.manual_seed(2)
    late = LateFusion(TINY).eval()
    plain = ViLBERT(TINY, co_attention_at=()).eval()
    plain.load_state_dict(late.state_dict())
    a, b = late.encode(*inputs(2)), plain.encode(*inputs(2))
    np.testing.assert_allclose(a.text.data, b.text.data, atol=1e-6)
    np.testing.assert_allclose(a.visual.data, b.visual.data, atol=1e-6)


def test_co_attention_runs_where_configured():
    """With one co-layer before text block 1 and visual block 0, the text states after
    text block 0 meet the embedded regions: equal to doing it by hand."""
    mv.manual_seed(3)
    model = ViLBERT(TINY, co_attention_at=((1, 0),), visual_depth=1).eval()
    ids, tm, feats, locs, rm = inputs(3)
    s = model.encode(ids, tm, feats, locs, rm)
    text = model.text_blocks[0](model.text_embeddings(ids), key_padding_mask=tm)
    visual = model.visual_embeddings(mv.tensor(feats), mv.tensor(locs))
    text, visual = model.co_blocks[0].exchange(text, visual, tm, rm)
    text = model.text_blocks[1](text, key_padding_mask=tm)
    visual = model.visual_blocks[0](visual, key_padding_mask=rm)
    np.testing.assert_allclose(s.text.data, text.data, atol=1e-6)
    np.testing.assert_allclose(s.visual.data, visual.data, atol=1e-6)


def test_the_default_placement_ends_each_stream_on_a_block_of_its_own():
    """The paper's placement (ViLBERT's t/v_biattention_id, (6, 0) ... (11, 5) of 12 text and
    6 visual blocks) at minivl's depths: the first co-attention layer after a text block and
    before any visual block, the last one followed by the last block of each stream; the
    model computes exactly that."""
    c = ViLBERTConfig()
    pairs = c.co_attention_at
    assert pairs[0][0] >= 1 and pairs[0][1] == 0
    assert pairs[-1] == (c.text_depth - 1, c.visual_depth - 1)
    assert pairs == ((1, 0), (1, 1))  # at two blocks a stream, the by-hand order below
    mv.manual_seed(5)
    model = ViLBERT(TINY, co_attention_at=pairs, text_depth=c.text_depth, visual_depth=c.visual_depth).eval()
    ids, tm, feats, locs, rm = inputs(5)
    s = model.encode(ids, tm, feats, locs, rm)
    text = model.text_blocks[0](model.text_embeddings(ids), key_padding_mask=tm)
    visual = model.visual_embeddings(mv.tensor(feats), mv.tensor(locs))
    text, visual = model.co_blocks[0].exchange(text, visual, tm, rm)
    visual = model.visual_blocks[0](visual, key_padding_mask=rm)
    text, visual = model.co_blocks[1].exchange(text, visual, tm, rm)
    text = model.text_blocks[1](text, key_padding_mask=tm)
    visual = model.visual_blocks[1](visual, key_padding_mask=rm)
    np.testing.assert_allclose(s.text.data, text.data, atol=1e-6)
    np.testing.assert_allclose(s.visual.data, visual.data, atol=1e-6)


@pytest.mark.parametrize("kind, text_sees_image", [("vilbert", True), ("single_stream", True),
                                                   ("late_fusion", False), ("text_only", False)])
def test_who_sees_the_image(kind, text_sees_image):
    mv.manual_seed(4)
    model = MODELS[kind](TINY).eval()
    ids, tm, feats, locs, rm = inputs(4)
    a = model.encode(ids, tm, feats, locs, rm)
    b = model.encode(ids, tm, feats + 1.0, locs[:, ::-1].copy(), rm)
    assert np.allclose(a.text.data, b.text.data, atol=1e-6) != text_sees_image
    if kind == "text_only":  # blind everywhere, and every region slot alike
        np.testing.assert_array_equal(a.visual.data, b.visual.data)
        assert np.ptp(model.region_logits(a).data, axis=1).max() == 0
    else:
        assert not np.allclose(a.pooled_image.data, b.pooled_image.data)


def test_padded_regions_do_not_change_real_tokens():
    mv.manual_seed(5)
    model = ViLBERT(TINY).eval()
    ids, tm, feats, locs, rm = inputs(5)
    a = model.encode(ids, tm, feats, locs, rm)
    feats[~rm], locs[~rm] = 50.0, 0.3
    b = model.encode(ids, tm, feats, locs, rm)
    np.testing.assert_allclose(a.text.data[tm], b.text.data[tm], atol=1e-5)
    np.testing.assert_allclose(a.visual.data[rm], b.visual.data[rm], atol=1e-5)


@pytest.mark.parametrize("kind", ["late_fusion", "text_only"])
def test_load_bert_makes_the_text_stream_that_bert(kind):
    """Without co-attention the text stream *is* the loaded BERT: same hidden states."""
    mv.manual_seed(6)
    bert = BERT(vocab_size=V, max_len=20, dim=16, depth=2, num_heads=2, mlp_ratio=2.0, dropout=0.0).eval()
    model = MODELS[kind](TINY).eval()
    copied = model.load_bert(bert)
    assert "text_blocks.1.attn.q_proj.weight" in copied and "mlm.dense.weight" in copied
    ids, tm, feats, locs, rm = inputs(6)
    np.testing.assert_allclose(model.encode(ids, tm, feats, locs, rm).text.data,
                               bert(ids, key_padding_mask=tm).data, atol=1e-5)
    assert model.mlm.decoder.weight is model.text_embeddings.token.weight  # still tied
    with pytest.raises(ValueError, match="does not fit the text stream"):
        model.load_bert(BERT(vocab_size=V, dim=8, depth=2, num_heads=2))


def test_single_stream_loads_bert_into_its_first_blocks():
    mv.manual_seed(7)
    bert = BERT(vocab_size=V, max_len=20, dim=16, depth=2, num_heads=2, mlp_ratio=2.0)
    model = SingleStream(TINY, text_depth=3)
    model.load_bert(bert)
    np.testing.assert_array_equal(model.blocks[1].mlp.fc2.weight.data, bert.encoder.blocks[1].mlp.fc2.weight.data)
    np.testing.assert_array_equal(model.text_embeddings.position.weight.data, bert.embeddings.position.weight.data[:12])


@pytest.mark.parametrize("kind", ["single_stream", "late_fusion", "text_only"])
def test_matched_baselines_are_within_ten_percent(kind):
    target = count_parameters("vilbert", TINY)
    config = matched_config(kind, TINY)
    n = count_parameters(kind, config)
    assert abs(n - target) / target < 0.10, (kind, n, target)
    worse = replace(config, text_depth=config.text_depth + 1)
    assert abs(count_parameters(kind, worse) - target) >= abs(n - target)


def test_frozen_text_stream_stays_put_while_the_rest_learns():
    mv.manual_seed(8)
    model = ViLBERT(TINY)
    model.text_embeddings.requires_grad_(False)
    model.text_blocks.requires_grad_(False)
    frozen = {k: v.copy() for k, v in model.state_dict().items()}
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    s = model.encode(*inputs(8))
    loss = (model.alignment_logits(s) ** 2).mean() + (model.region_logits(s) ** 2).mean()
    loss.backward()
    opt.step()
    after = model.state_dict()
    for name in frozen:
        same = np.array_equal(frozen[name], after[name])
        if name.startswith(("text_embeddings.", "text_blocks.")) or name == "mlm.decoder.weight":
            assert same, name
    assert not np.array_equal(frozen["co_blocks.0.text.attn.q_proj.weight"], after["co_blocks.0.text.attn.q_proj.weight"])
    assert not np.array_equal(frozen["visual_blocks.0.mlp.fc1.weight"], after["visual_blocks.0.mlp.fc1.weight"])


def test_gradcheck_float64_through_both_streams():
    mv.manual_seed(9)
    config = replace(TINY, text_dim=4, text_heads=1, text_mlp_dim=4, visual_dim=4, visual_heads=1,
                     visual_mlp_dim=4, co_dim=4, co_heads=2, pool_dim=3, text_depth=1, visual_depth=1,
                     co_attention_at=((1, 0),), feat_dim=3)
    model = ViLBERT(config).eval()
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    ids = np.array([[1, 5, 7]])
    tm = np.array([[True, True, False]])
    rng = np.random.default_rng(9)
    feats = mv.tensor(rng.standard_normal((1, 3, 3)), requires_grad=True)
    locs = mv.tensor(rng.random((1, 3, 5)), requires_grad=True)
    rm = np.array([[True, True, False]])
    params = [model.co_blocks[0].visual.attn.k_proj.weight, model.visual_embeddings.location.weight,
              model.text_blocks[0].attn.v_proj.weight]
    gradcheck(lambda f, lo, *ps: model(ids, tm, f, lo, rm), feats, locs, *params)


def test_checkpoint_round_trip(tmp_path):
    mv.manual_seed(10)
    model = ViLBERT(TINY, co_attention_at=((0, 0), (2, 2))).eval()
    save_checkpoint(model, tmp_path / "v.safetensors")
    again = load_checkpoint(ViLBERT, tmp_path / "v.safetensors").eval()
    assert again.config == model.config
    np.testing.assert_array_equal(again(*inputs()).data, model(*inputs()).data)


def test_record_reads_each_words_attention_over_the_regions():
    model = ViLBERT(TINY).eval()
    with nn.record(model.co_blocks[0].text) as rec:
        model.encode(*inputs())
    (weights,) = rec.weights
    assert weights.shape == (3, 2, 6, 5)  # (B, heads, words, regions)
    np.testing.assert_allclose(weights.data.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights.data[1, :, :, 3:] == 0)  # padded regions get no attention
