"""ViT and the shared VisionEncoder: token shapes, the patch embedding as a
Linear on flattened patches, gradients to every parameter, input errors, a
checkpoint round trip, attention rollout, a short training run, and parity
(logits, hidden states, gradients) with Hugging Face's ViTForImageClassification."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivl as mv
from minivl import functional as F
from minivl import nn
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.io import load, save
from minivl.models.hf import rename
from minivl.models.vision import VisionEncoder, patchify, preprocess
from minivl.models.vit import HF_RULES, ViT
from minivl.recipes.vit import ImageTask, train_vit
from minivl.tensor import no_grad
from minivl.viz.attention import (
    attention_rollout,
    attention_rollout_figure,
    attention_weights,
    cls_attention,
    position_similarity,
    rollout_map,
)


def tiny_vit(**overrides):
    options = dict(num_classes=5, image_size=8, patch_size=4, in_channels=3, dim=16, depth=2, num_heads=2)
    return ViT(**{**options, **overrides})


def images(b=3, c=3, s=8, seed=0):
    return np.random.default_rng(seed).standard_normal((b, c, s, s)).astype(np.float32)


# --------------------------------------------------------------------------- the encoder


@settings(deadline=None, max_examples=10)
@given(grid=st.integers(1, 3), patch=st.integers(1, 4), channels=st.sampled_from([1, 3]),
       batch=st.integers(1, 3), ln_pre=st.booleans())
def test_encoder_shapes_and_every_hidden_state(grid, patch, channels, batch, ln_pre):
    size = grid * patch
    enc = VisionEncoder(size, patch, channels, dim=8, depth=3, num_heads=2, ln_pre=ln_pre).eval()
    x = images(batch, channels, size)
    with no_grad():
        with nn.record(enc) as rec:
            out = enc(x)
        plain = enc(x)
    hidden, weights = rec.hidden, rec.weights
    tokens = 1 + grid * grid
    assert out.shape == (batch, tokens, 8)
    assert len(hidden) == 3 + 1 and all(h.shape == (batch, tokens, 8) for h in hidden)
    assert len(weights) == 3 and all(w.shape == (batch, 2, tokens, tokens) for w in weights)
    # the output is ln_post of the last hidden state; asking for extras changes nothing
    expected = F.layer_norm(hidden[-1], enc.ln_post.weight, enc.ln_post.bias, enc.ln_post.eps)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain.numpy(), out.numpy(), rtol=1e-5, atol=1e-6)


@settings(deadline=None, max_examples=15)
@given(grid=st.integers(1, 3), patch=st.integers(1, 4), channels=st.integers(1, 3),
       dim=st.integers(1, 6), seed=st.integers(0, 100))
def test_patch_embedding_is_a_linear_layer_on_flattened_patches(grid, patch, channels, dim, seed):
    size = grid * patch
    enc = VisionEncoder(size, patch, channels, dim=dim * 2, depth=1, num_heads=2)
    enc.cls_token.data[...] = np.random.default_rng(seed).standard_normal(enc.cls_token.shape)
    x = images(2, channels, size, seed)
    flat = patchify(x, patch).reshape(2, grid * grid, -1)  # (B, N, C*P*P)
    w = enc.patch_embed.weight.numpy().reshape(dim * 2, -1)  # (D, C*P*P)
    tokens = flat @ w.T + enc.patch_embed.bias.numpy()  # (B, N, D)
    with no_grad():
        embedded = enc.embed(x).numpy() - enc.pos_embed.numpy()  # (B, 1+N, D)
    np.testing.assert_allclose(embedded[:, 1:], tokens, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(embedded[:, 0], np.broadcast_to(enc.cls_token.numpy()[0], (2, dim * 2)), atol=1e-6)


def test_patches_are_cut_row_by_row():
    x = np.arange(2 * 1 * 4 * 6).reshape(2, 1, 4, 6)
    p = patchify(x, 2)  # a 2x3 grid
    assert p.shape == (2, 6, 1, 2, 2)
    np.testing.assert_array_equal(p[0, 1, 0], x[0, 0, 0:2, 2:4])  # second patch: top row, middle
    np.testing.assert_array_equal(p[1, 3, 0], x[1, 0, 2:4, 0:2])  # fourth: second row, left


def test_preprocess_maps_uint8_hwc_to_normalised_nchw():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[:, :, :, 1] = 255
    x = preprocess(rgb)
    assert isinstance(x, np.ndarray) and x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], -1.0)
    np.testing.assert_array_equal(x[:, 1], 1.0)
    grey = preprocess(np.full((1, 4, 4), 51, np.uint8), mean=0.1, std=0.2)  # 51 / 255 = 0.2
    assert grey.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(grey, 0.5, rtol=1e-6)


def test_bad_inputs_name_the_shapes():
    enc = VisionEncoder(8, 4, 3, dim=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"not divisible by patch_size 4"):
        VisionEncoder(10, 4, 3)
    with pytest.raises(ValueError, match=r"4-D.*\(2, 3, 8\)"):
        enc(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"1 channels \(shape \(2, 1, 8, 8\)\).*expects 3"):
        enc(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"10x10.*not divisible by patch_size 4"):
        enc(np.zeros((2, 3, 10, 10), np.float32))
    with pytest.raises(ValueError, match=r"12x12.*learned for 8x8"):
        enc(np.zeros((2, 3, 12, 12), np.float32))
    with pytest.raises(TypeError, match="preprocess"):
        enc(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\).*\(8, 8\)"):
        preprocess(np.zeros((8, 8), np.uint8))


def test_images_are_an_ndarray_or_a_tensor_and_a_tensor_can_take_a_gradient():
    model = tiny_vit().eval()
    x = images(2)
    pixels = mv.tensor(x, requires_grad=True)
    logits = model(pixels)
    np.testing.assert_array_equal(logits.numpy(), model(x).numpy())
    logits[:, 1].sum().backward()
    assert pixels.grad.shape == x.shape and np.abs(pixels.grad).max() > 0


# --------------------------------------------------------------------------- the classifier


def test_gradients_reach_every_parameter():
    model = tiny_vit(depth=2)
    loss = F.cross_entropy(model(images(4)), np.array([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and np.isfinite(p.grad).all(), name
        if name.endswith("attn.k_proj.bias"):
            # q . b_k adds the same score to every key of a query: softmax ignores it
            np.testing.assert_allclose(p.grad, 0, atol=1e-6, err_msg=name)
        else:
            assert np.abs(p.grad).max() > 0, name


def test_classifier_reads_only_the_cls_token():
    model = tiny_vit().eval()
    with no_grad():
        logits = model(images(2))
        hidden = model.encoder(images(2))
    np.testing.assert_allclose(logits.numpy(), model.head(hidden[:, 0]).numpy(), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, suffix):
    model = tiny_vit().eval()
    x = images(3)
    save(model.state_dict(), tmp_path / f"vit{suffix}")
    mv.manual_seed(123)  # a fresh model with other weights...
    other = tiny_vit().eval()
    assert not np.allclose(other(x).numpy(), model(x).numpy())
    other.load_state_dict(load(tmp_path / f"vit{suffix}"))  # ...becomes the same model
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())
    save_checkpoint(model, tmp_path / "with-config.safetensors")
    rebuilt = load_checkpoint(ViT, tmp_path / "with-config.safetensors").eval()
    assert rebuilt.config == model.config
    np.testing.assert_array_equal(rebuilt(x).numpy(), model(x).numpy())


# --------------------------------------------------------------------------- attention


@settings(deadline=None, max_examples=20)
@given(layers=st.integers(1, 4), heads=st.integers(1, 3), tokens=st.integers(2, 6), seed=st.integers(0, 1000))
def test_rollout_rows_sum_to_one_and_follow_the_recursion(layers, heads, tokens, seed):
    rng = np.random.default_rng(seed)
    weights = [rng.dirichlet(np.ones(tokens), size=(2, heads, tokens)) for _ in range(layers)]
    r = attention_rollout(weights)  # (2, T, T)
    np.testing.assert_allclose(r.sum(-1), 1.0, rtol=1e-12)
    expected = np.eye(tokens)
    for w in weights:  # Abnar & Zuidema: 0.5 * mean_heads(A) + 0.5 * I, multiplied through
        expected = (0.5 * w.mean(axis=1) + 0.5 * np.eye(tokens)) @ expected
    np.testing.assert_allclose(r, expected, rtol=1e-10)


def test_rollout_of_self_attention_only_is_the_identity():
    weights = [np.broadcast_to(np.eye(5), (1, 2, 5, 5))] * 3
    np.testing.assert_allclose(attention_rollout(weights)[0], np.eye(5))


def test_attention_maps_of_a_model():
    model = tiny_vit(image_size=12, patch_size=4)  # a 3x3 grid
    pictures = np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    weights = attention_weights(model, pictures)
    assert model.training  # the mode is restored
    assert len(weights) == 2 and weights[0].shape == (2, 2, 10, 10)
    maps = cls_attention(weights[-1], 3)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)) + weights[-1][:, :, 0, 0], 1.0, rtol=1e-5)
    rolled = rollout_map(weights, 3)
    assert rolled.shape == (2, 3, 3) and (rolled > 0).all() and (rolled.sum(axis=(1, 2)) < 1).all()
    sim = position_similarity(model.encoder.pos_embed.numpy(), 3)
    np.testing.assert_allclose(sim[1, 2, 1, 2], 1.0)  # each position is itself
    fig = attention_rollout_figure(model, pictures, ["a", "b"])
    assert len(fig.axes) == 4


# --------------------------------------------------------------------------- training


def test_a_short_training_run_learns_and_saves(tmp_path):
    # bright-on-the-left vs bright-on-the-right: only the patch positions tell them apart
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 96)
    pictures = rng.integers(0, 60, (96, 8, 8), dtype=np.uint8)
    for i, y in enumerate(labels):
        pictures[i, :, 4 * y : 4 * y + 4] += 180
    task = ImageTask("halves", pictures[:64], labels[:64], pictures[64:], labels[64:], ("left", "right"), 4)
    result = train_vit(task, steps=60, batch_size=16, dim=16, depth=1, num_heads=2, warmup=5,
                       dropout=0.0, label_smoothing=0.0,
                       eval_every=10, progress=False, out=tmp_path)
    loss = result["history"].loss
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5])
    assert result["metrics"]["test_accuracy"] > 0.9
    rebuilt = load_checkpoint(ViT, tmp_path / "vit-halves.safetensors").eval()
    x = preprocess(pictures[64:])
    np.testing.assert_array_equal(rebuilt(x).numpy(), result["model"](x).numpy())


# --------------------------------------------------------------------------- Hugging Face


def test_old_and_new_hf_names_map_to_the_same_parameter():
    pairs = {
        "vit.encoder.layer.3.attention.attention.query.weight": "encoder.transformer.blocks.3.attn.q_proj.weight",
        "vit.layers.3.attention.q_proj.weight": "encoder.transformer.blocks.3.attn.q_proj.weight",
        "vit.encoder.layer.0.attention.output.dense.bias": "encoder.transformer.blocks.0.attn.out_proj.bias",
        "vit.layers.0.attention.o_proj.bias": "encoder.transformer.blocks.0.attn.out_proj.bias",
        "vit.encoder.layer.1.intermediate.dense.weight": "encoder.transformer.blocks.1.mlp.fc1.weight",
        "vit.encoder.layer.1.output.dense.weight": "encoder.transformer.blocks.1.mlp.fc2.weight",
        "vit.encoder.layer.1.layernorm_after.bias": "encoder.transformer.blocks.1.ln_2.bias",
        "vit.layernorm.weight": "encoder.ln_post.weight",
        "vit.embeddings.patch_embeddings.projection.weight": "encoder.patch_embed.weight",
        "classifier.bias": "head.bias",
    }
    for hf, ours in pairs.items():
        assert rename(hf, HF_RULES) == ours, hf


@pytest.mark.oracle
@pytest.mark.parametrize("qkv_bias, act, channels", [(True, "gelu", 3), (False, "gelu_new", 1)])
def test_matches_hugging_face_vit(qkv_bias, act, channels):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
        image_size=12, patch_size=4, num_channels=channels, num_labels=7, qkv_bias=qkv_bias,
        hidden_act=act,
    )
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():  # move every weight away from its init so that each one matters
        for p in hf.parameters():
            p.add_(0.2 * torch.randn_like(p))
    ours = ViT.from_hf({k: v.numpy() for k, v in hf.state_dict().items()}, config.to_dict())
    assert not any(m.training for m in ours.modules())
    x = images(4, channels, 12, seed=1)
    labels = np.array([0, 3, 6, 2])

    out = hf(pixel_values=torch.from_numpy(x), output_hidden_states=True)
    torch.nn.functional.cross_entropy(out.logits, torch.from_numpy(labels)).backward()
    with nn.record(ours) as rec:
        logits = ours(x)
    hidden = rec.hidden
    F.cross_entropy(logits, labels).backward()

    np.testing.assert_allclose(logits.numpy(), out.logits.detach().numpy(), atol=1e-4, rtol=1e-4)
    for mine, theirs in zip(hidden, out.hidden_states, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.detach().numpy(), atol=1e-4, rtol=1e-4)
    params = dict(ours.named_parameters())
    for name, p in hf.named_parameters():
        np.testing.assert_allclose(params[rename(name, HF_RULES)].grad, p.grad.numpy(),
                                   atol=1e-5, rtol=1e-3, err_msg=name)
