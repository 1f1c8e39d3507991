"""LLaVA's model (S29): penultimate patch features, the image positions filled by the
projector, the masked loss, the cached stream, and a checkpoint that loses nothing."""

from __future__ import annotations

import numpy as np
import pytest

from minivl import functional as F
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.clip import CLIP
from minivl.models.gpt import GPT
from minivl.models.llava import LLaVA
from minivl.tensor import Tensor, no_grad

N = 4  # 2 x 2 patches


def tiny(projector="linear", seed=0):
    np.random.seed(seed)
    from minivl.random import manual_seed

    manual_seed(seed)
    clip = CLIP(image_size=16, patch_size=8, vision_dim=16, vision_depth=2, vision_heads=2,
                vocab_size=40, context_length=8, text_dim=16, text_depth=1, text_heads=2, embed_dim=8)
    gpt = GPT(vocab_size=30, max_len=24, dim=16, depth=2, num_heads=2)
    return LLaVA.from_parts(clip, gpt, image_token_id=3, projector=projector), clip, gpt


def ids_with_image(B=2, before=2, after=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 30, size=(B, before + N + after))
    ids[:, before:before + N] = 3
    return ids


def images(B=2, seed=0):
    return np.random.default_rng(seed).standard_normal((B, 3, 16, 16)).astype(np.float32)


def test_features_are_the_penultimate_patch_states():
    model, clip, _ = tiny()
    x = images()
    with no_grad():
        v = clip.vision_model
        h = v.ln_pre(v.embed(Tensor(x)))
        h = v.transformer.blocks[0](h)  # depth 2: the penultimate layer is block 1's output
    np.testing.assert_allclose(model.image_features(x), h.numpy()[:, 1:], rtol=1e-5, atol=1e-6)
    assert model.image_features(x).shape == (2, N, 16)


def test_image_positions_hold_the_projected_patches():
    """Patch k one-hot, projector column k = token (7 + k)'s embedding: LLaVA is GPT on ids
    whose image positions hold 7, 8, 9, 10, in order."""
    model, _, gpt = tiny()
    feats = np.zeros((2, N, 16), np.float32)
    feats[:, np.arange(N), np.arange(N)] = 1.0  # patch k = e_k
    emb = gpt.transformer.embeddings.token.weight.data
    model.projector.fc1.weight.data[...] = 0
    model.projector.fc1.weight.data[:, :N] = emb[7:7 + N].T
    model.projector.fc1.bias.data[...] = 0
    ids = ids_with_image()
    filled = ids.copy()
    filled[:, 2:2 + N] = np.arange(7, 7 + N)
    with no_grad():
        got = model.forward_features(feats, ids).numpy()
        want = gpt(filled).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    feats = np.random.default_rng(1).standard_normal((2, N, 16)).astype(np.float32)
    # the features matter: a different image changes the logits after the image, never before it
    model2, _, _ = tiny()
    with no_grad():
        a = model2.forward_features(feats, ids).numpy()
        b = model2.forward_features(feats + 1, ids).numpy()
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    assert np.abs(a[:, 2:] - b[:, 2:]).max() > 1e-4


def test_loss_covers_only_labelled_tokens():
    model, _, _ = tiny("mlp")
    ids = ids_with_image()
    labels = np.full_like(ids, -100)
    labels[:, -3:] = ids[:, -3:]
    feats = model.image_features(images())
    with no_grad():
        logits = model.forward_features(feats, ids).numpy()[:, :-1]
        loss = float(model.loss(feats, ids, labels).item())
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    rows, cols = np.nonzero(labels[:, 1:] != -100)
    want = -logp[rows, cols, labels[:, 1:][rows, cols]].mean()
    assert loss == pytest.approx(want, rel=1e-5)


def test_projector_gradient_matches_finite_differences():
    from minivl.testing import gradcheck

    model, _, _ = tiny("mlp")
    model.lm.requires_grad_(False)
    feats = np.random.default_rng(2).standard_normal((1, N, 16))
    ids, labels = ids_with_image(1), None
    labels = ids.copy()
    labels[:, :6] = -100
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    w = model.projector.fc2.weight
    w.requires_grad = True

    def fn(weight):
        model.projector.fc2.weight = weight
        return model.loss(feats, ids, labels)

    assert gradcheck(fn, w)


def test_stream_with_cache_equals_uncached_greedy():
    model, _, _ = tiny()
    ids = ids_with_image(2, after=3)
    feats = model.image_features(images())
    got = model.generate(ids, feats, max_new_tokens=6)
    seq = ids
    with no_grad():
        for _ in range(6):
            nxt = model.forward_features(feats, seq).numpy()[:, -1].argmax(-1)
            seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(got, seq[:, ids.shape[1]:])


def test_bad_inputs_raise_with_shapes():
    model, _, _ = tiny()
    ids = ids_with_image()
    with pytest.raises(ValueError, match=r"features must have shape"):
        model.forward_features(np.zeros((2, N + 1, 16)), ids)
    with pytest.raises(ValueError, match="no image or features"):
        model.forward_features(None, ids)
    split = ids.copy()
    split[1, 2 + N - 1], split[1, 2 + N + 1] = 5, 3  # row 1's image ids are not consecutive
    with pytest.raises(ValueError, match="row 1 does not"):
        model.forward_features(np.zeros((2, N, 16)), split)
    with pytest.raises(ValueError, match="projector"):
        LLaVA(projector="conv")
    with pytest.raises(ValueError, match="image_position"):
        LLaVA(image_position="middle")


def test_rows_may_hold_the_image_at_different_columns():
    """A batch whose rows start the image at columns 1 and 4 gives each row the logits it gets
    alone (the question-first template puts the image after questions of any length)."""
    model, _, _ = tiny()
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((2, N, 16)).astype(np.float32)
    a, b = ids_with_image(1, before=1, after=6, seed=1), ids_with_image(1, before=4, after=3, seed=2)
    with no_grad():
        both = model.forward_features(feats, np.concatenate([a, b])).numpy()
        alone = [model.forward_features(feats[i:i + 1], x).numpy()[0] for i, x in enumerate((a, b))]
    np.testing.assert_allclose(both, np.stack(alone), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(tmp_path):
    model, _, _ = tiny("mlp")
    save_checkpoint(model, tmp_path / "m.safetensors")
    back = load_checkpoint(LLaVA, tmp_path / "m.safetensors")
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert back.config == model.config and not any(p.requires_grad for p in back.vision.parameters())
    ids, feats = ids_with_image(), model.image_features(images())
    with no_grad():
        np.testing.assert_array_equal(model.forward_features(feats, ids).numpy(),
                                      back.forward_features(feats, ids).numpy())
    assert F is not None
