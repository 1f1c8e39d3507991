"""CLIP: unit embeddings and scaled cosine logits, the end-of-text rules, the
temperature clamp, gradient caching (the exact full-batch gradient), zero-shot
classification against a direct computation, and parity with Hugging Face's
CLIPModel. (Metrics: tests/test_metrics.py; tokenizer:
tests/tokenizers/test_clip_tokenizer.py; training: tests/recipes/test_clip.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivl as mv
from minivl.losses import info_nce
from minivl.models.clip import CLIP, eot_positions
from minivl.models.gradcache import grad_cache_loss
from minivl.tensor import no_grad

V = 50  # vocabulary of the tiny models; id V - 1 plays <|endoftext|>


def tiny(**overrides):
    options = dict(embed_dim=8, image_size=16, patch_size=8, vision_dim=16, vision_depth=1,
                   vision_heads=2, vocab_size=V, context_length=8, text_dim=16, text_depth=1,
                   text_heads=2)
    return CLIP(**{**options, **overrides})


def float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def batch(n, seed=0, dtype=np.float32, length=8):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 3, 16, 16)).astype(dtype)
    ids = rng.integers(1, V - 1, (n, length))
    ends = rng.integers(2, length, n)  # each row's end-of-text position
    ids[np.arange(n), ends] = V - 1
    mask = np.arange(length)[None] <= ends[:, None]
    ids[~mask] = 0  # right padding, as CLIPTokenizer does
    return images, ids, mask, ends


# --------------------------------------------------------------------------- the model


def test_embeddings_are_unit_vectors_and_logits_are_scaled_cosines():
    model = tiny().eval()
    images, ids, mask, _ = batch(5)
    with no_grad():
        img, txt = model.encode_image(images), model.encode_text(ids, mask)
        per_image = model(images, ids, mask)
    assert img.shape == txt.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(img.numpy(), axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt.numpy(), axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(per_image.numpy(), (1 / 0.07) * img.numpy() @ txt.numpy().T, rtol=1e-5)


def test_the_temperature_starts_at_1_over_0_07_and_is_clipped_at_100():
    model = tiny()
    np.testing.assert_allclose(model.scale, 1 / 0.07, rtol=1e-6)
    model.logit_scale.data[...] = 7.0  # exp(7) = 1097
    model.clamp_logit_scale_()
    np.testing.assert_allclose(model.scale, 100.0, rtol=1e-6)
    model.logit_scale.data[...] = -1.0
    assert model.clamp_logit_scale_().scale == 1.0


def test_the_three_end_of_text_rules_agree_on_clip_style_ids():
    _, ids, mask, ends = batch(6)
    np.testing.assert_array_equal(eot_positions(ids), ends)  # the largest id (OpenAI)
    np.testing.assert_array_equal(eot_positions(ids, mask), ends)  # the last real token
    np.testing.assert_array_equal(eot_positions(ids, eot_id=V - 1), ends)  # the first eot (HF)
    with pytest.raises(ValueError, match="no end-of-text"):
        eot_positions(ids, eot_id=V + 5)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 1000))
def test_text_features_ignore_everything_after_the_end_of_text_token(seed):
    # the causal mask means the eot position never sees what follows it
    model = tiny().eval()
    _, ids, _, ends = batch(4, seed)
    noisy = ids.copy()
    after = np.arange(ids.shape[1])[None] > ends[:, None]
    noisy[after] = np.random.default_rng(seed).integers(1, V - 1, after.sum())
    with no_grad():
        np.testing.assert_allclose(model.encode_text(noisy).numpy(), model.encode_text(ids).numpy(),
                                   atol=1e-6)


def test_loss_is_info_nce_of_the_two_towers():
    model = tiny()
    images, ids, mask, _ = batch(6)
    expected = info_nce(model.encode_image(images), model.encode_text(ids, mask), model.logit_scale)
    np.testing.assert_allclose(model.loss(images, ids, mask).item(), expected.item(), rtol=1e-6)


# --------------------------------------------------------------------------- gradient caching


def _grads(model):
    return {name: p.grad.copy() for name, p in model.named_parameters()}


def test_gradient_cache_gives_the_full_batch_gradient_exactly():
    model = float64(tiny())
    images, ids, mask, _ = batch(64, dtype=np.float64)
    model.zero_grad()
    full = model.loss(images, ids, mask)
    full.backward()
    expected = _grads(model)
    model.zero_grad()
    cached = grad_cache_loss(lambda i, t: info_nce(i, t, model.logit_scale),
                             [(model.encode_image, (images,)), (model.encode_text, (ids, mask))], 16)
    np.testing.assert_allclose(cached.item(), full.item(), rtol=1e-12)
    cached.backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, expected[name], rtol=1e-10, atol=1e-10, err_msg=name)
    with pytest.raises(RuntimeError, match="already called"):  # a second backward would double the grads
        cached.backward()


def test_gradient_cache_replays_dropout_masks():
    # With dropout on, the chunked loss is the loss of the chunks' own masks;
    # the re-run must draw exactly those masks again.
    model = float64(tiny(dropout=0.2))
    images, ids, mask, _ = batch(24, seed=3, dtype=np.float64)
    chunks = [slice(0, 10), slice(10, 20), slice(20, 24)]
    mv.manual_seed(7)
    model.zero_grad()
    img = mv.functional.concat([model.encode_image(images[c]) for c in chunks])
    txt = mv.functional.concat([model.encode_text(ids[c], mask[c]) for c in chunks])
    reference = info_nce(img, txt, model.logit_scale)
    reference.backward()
    expected = _grads(model)
    mv.manual_seed(7)
    model.zero_grad()
    cached = grad_cache_loss(lambda i, t: info_nce(i, t, model.logit_scale),
                             [(model.encode_image, (images,)), (model.encode_text, (ids, mask))], 10)
    np.testing.assert_allclose(cached.item(), reference.item(), rtol=1e-12)
    cached.backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, expected[name], rtol=1e-10, atol=1e-10, err_msg=name)


def test_gradient_cache_rejects_bad_chunks():
    model = tiny()
    images, ids, mask, _ = batch(4)
    with pytest.raises(ValueError, match="chunk_size"):
        grad_cache_loss(lambda i, t: info_nce(i, t, 1.0), [(model.encode_image, (images,))], 0)
    with pytest.raises(ValueError, match="share their first axis"):
        grad_cache_loss(lambda t: t.sum(), [(model.encode_text, (ids, mask[:3]))], 2)


# --------------------------------------------------------------------------- zero-shot and retrieval


def word_tokenizer(texts):
    """A stand-in tokenizer: one id per word, then the end-of-text id."""
    words = sorted({w for t in texts for w in t.split()})
    rows = [[1 + words.index(w) for w in t.split()] + [V - 1] for t in texts]
    width = max(map(len, rows))
    ids = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, ids > 0


def test_zero_shot_classifier_is_the_renormalised_mean_of_normalised_prompts():
    model = tiny().eval()
    names, templates = ["red circle", "blue square", "green ring"], ["a photo of a {}.", "a {}."]
    classifier = model.zero_shot_classifier(names, templates, word_tokenizer)
    ids, mask = word_tokenizer([t.format(n) for n in names for t in templates])
    with no_grad():
        raw = model.encode_text(ids, mask, normalize=False).numpy().reshape(3, 2, -1)
    unit = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    mean = unit.mean(axis=1)
    np.testing.assert_allclose(classifier, mean / np.linalg.norm(mean, axis=-1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    images = batch(4)[0]
    probs = model.predict(images, classifier)
    with no_grad():
        img = model.encode_image(images).numpy()
    logits = model.scale * img @ classifier.T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="must contain"):
        model.zero_shot_classifier(names, ["no slot"], word_tokenizer)


# --------------------------------------------------------------------------- Hugging Face parity


def hf_clip(eos_token_id, seed=0):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    text = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=12, eos_token_id=eos_token_id,
                bos_token_id=V - 2, pad_token_id=0, hidden_act="quick_gelu")
    vision = dict(image_size=16, patch_size=4, hidden_size=24, intermediate_size=40,
                  num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu")
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)
    torch.manual_seed(seed)
    hf = transformers.CLIPModel(config).eval()
    with torch.no_grad():  # move every weight off its init (unit norms, zero biases), so each one matters
        for p in hf.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return torch, config, hf


@pytest.mark.oracle
@pytest.mark.parametrize("eos_token_id", [2, V - 1], ids=["legacy-argmax", "explicit-eos"])
def test_from_hf_matches_transformers_clip(eos_token_id):
    torch, config, hf = hf_clip(eos_token_id)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    ids = rng.integers(3, V - 2, (4, 10))
    ends = np.array([9, 4, 6, 2])
    ids[np.arange(4), ends] = V - 1
    after = np.arange(10)[None] > ends[:, None]
    if eos_token_id == 2:
        ids[after] = 0  # padding below the end-of-text id, as CLIP's
    else:
        ids[after] = V - 1  # padding *with* the eos id: only its first occurrence counts
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels))
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    model = CLIP.from_hf(state, config.to_dict())
    assert not any(m.training for m in model.modules())
    assert model.config.eot_id == (None if eos_token_id == 2 else V - 1)
    with no_grad():
        per_image = model(pixels, ids)
    np.testing.assert_allclose(per_image.numpy(), out.logits_per_image.numpy(), atol=1e-4)
    np.testing.assert_allclose(per_image.T.numpy(), out.logits_per_text.numpy(), atol=1e-4)
    np.testing.assert_allclose(model.encode_image(pixels).numpy(), out.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(model.encode_text(ids).numpy(), out.text_embeds.numpy(), atol=1e-5)
    # the same model from the config object, and from a safetensors round trip through mv.load
    assert CLIP.from_hf(state, config).config == model.config


@pytest.mark.oracle
def test_from_hf_reads_a_safetensors_file_written_by_hf(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    torch, config, hf = hf_clip(2)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "model.safetensors")
    model = CLIP.from_hf(mv.load(tmp_path / "model.safetensors"), config.to_dict())
    pixels = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = hf.get_image_features(pixel_values=torch.tensor(pixels))
    expected = getattr(expected, "pooler_output", expected).numpy()
    with no_grad():
        got = model.encode_image(pixels, normalize=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


# --------------------------------------------------------------------------- plots


def test_plots_show_the_numbers_they_are_given():
    from minivl.viz.clip import embedding_pca, similarity_heatmap, training_curves, zero_shot_bars

    rng = np.random.default_rng(0)
    sim = rng.uniform(-1, 1, (3, 4))
    images = rng.integers(0, 255, (3, 8, 8, 3)).astype(np.uint8)
    fig = similarity_heatmap(sim, images, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), sim)
    probs = rng.dirichlet(np.ones(5), 3)
    fig = zero_shot_bars(images, probs, list("vwxyz"), true_labels=[0, 1, 2], top=3)
    widths = sorted(p.get_width() for p in fig.axes[1].patches)
    np.testing.assert_allclose(widths, np.sort(probs[0])[-3:])
    fig = embedding_pca(rng.standard_normal((6, 4)), rng.standard_normal((2, 4)), [0] * 6, [0, 1], ["p", "q"])
    assert len(fig.axes[0].collections) == 2
    fig = training_curves([1, 2], [3.0, 2.0], [14.3, 15.0], [{"step": 2, "top1": 0.5}])
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), [14.3, 15.0])
    with pytest.raises(ValueError, match="one entry per step"):
        training_curves([1], [3.0, 2.0], [1.0, 1.0])
