"""DALL-E's discrete VAE (``minivl/models/dvae.py``): the logit-Laplace likelihood
against a hand computation and as a density, the KL to the uniform prior, the
Gumbel-softmax relaxation's statistics (frequencies, temperature, hard vs soft),
the ELBO terms against NumPy, shapes, input checks and the checkpoint round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minivl import functional as F
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.dvae import (
    DiscreteVAE,
    depth_to_space,
    kl_to_uniform,
    logit_laplace_log_prob,
    map_pixels,
    pixels,
    space_to_depth,
)
from minivl.random import manual_seed
from minivl.tensor import Tensor
from minivl.testing import gradcheck


def tiny(**overrides):
    return DiscreteVAE(**{**dict(image_size=8, vocab_size=7, widths=(4, 8), codebook_dim=6), **overrides})


def images(n=3, size=8, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size)).astype(np.float32)


# ----------------------------------------------------------------------------- the likelihood


def test_logit_laplace_matches_a_hand_computation():
    x, mu, b = 0.3, 0.2, 0.5
    by_hand = -math.log(2 * b * x * (1 - x)) - abs(math.log(x / (1 - x)) - mu) / b
    got = logit_laplace_log_prob(np.array([x]), Tensor(np.array([mu])), Tensor(np.array([math.log(b)])))
    assert got.data[0] == pytest.approx(by_hand, rel=1e-12)


def test_logit_laplace_is_a_density_on_the_unit_interval():
    x = np.linspace(1e-6, 1 - 1e-6, 400001)
    for mu, b in ((0.0, 1.0), (1.3, 0.2), (-2.0, 0.7)):
        log_p = logit_laplace_log_prob(x, Tensor(np.full_like(x, mu)), Tensor(np.full_like(x, math.log(b))))
        assert np.trapezoid(np.exp(log_p.data), x) == pytest.approx(1.0, abs=2e-3)


def test_logit_laplace_gradients():
    rng = np.random.default_rng(1)
    x = map_pixels(rng.random((2, 5)))
    mu = Tensor(rng.standard_normal((2, 5)), requires_grad=True)
    log_b = Tensor(rng.standard_normal((2, 5)) * 0.3, requires_grad=True)
    gradcheck(lambda m, lb: logit_laplace_log_prob(x, m, lb), mu, log_b)


def test_pixels_are_mapped_into_the_open_interval():
    assert map_pixels(np.array([0.0, 1.0])).tolist() == pytest.approx([0.1, 0.9])


# ----------------------------------------------------------------------------- KL to uniform


def test_kl_to_uniform_by_hand():
    logits = np.random.default_rng(2).standard_normal((3, 5, 2, 2))  # (B, K, h, w)
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    by_hand = (q * np.log(q * 5)).sum(axis=1)  # sum_k q log(q / (1/K))
    np.testing.assert_allclose(kl_to_uniform(Tensor(logits), axis=1).data, by_hand, rtol=1e-10)


def test_kl_to_uniform_is_zero_at_uniform_and_log_k_at_one_hot():
    flat = kl_to_uniform(Tensor(np.zeros((1, 8))), axis=1).data
    peaked = kl_to_uniform(Tensor(np.array([[100.0] + [0.0] * 7])), axis=1).data
    assert flat[0] == pytest.approx(0.0, abs=1e-12) and peaked[0] == pytest.approx(math.log(8), rel=1e-9)


# ----------------------------------------------------------------------------- Gumbel-softmax


def test_gumbel_argmax_frequencies_match_softmax():
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    n = 40000
    g = np.random.default_rng(3)
    sample = F.gumbel_softmax(Tensor(np.tile(logits, (n, 1))), tau=1.0, hard=True, generator=g).data
    freq = sample.mean(axis=0)
    p = np.exp(logits)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n)), (freq, p)


def test_low_temperature_samples_are_nearly_one_hot_and_high_ones_are_not():
    logits = Tensor(np.random.default_rng(4).standard_normal((2000, 16)))
    hot = F.gumbel_softmax(logits, tau=1 / 16, generator=np.random.default_rng(5)).data.max(axis=1)
    warm = F.gumbel_softmax(logits, tau=1.0, generator=np.random.default_rng(5)).data.max(axis=1)
    assert hot.mean() > 0.9 and warm.mean() < hot.mean() - 0.2


def test_hard_sample_is_one_hot_with_the_soft_gradient():
    logits = np.random.default_rng(6).standard_normal((4, 6))
    weights = np.random.default_rng(7).standard_normal((4, 6))
    grads, values = [], []
    for hard in (False, True):
        x = Tensor(logits.copy(), requires_grad=True)
        y = F.gumbel_softmax(x, tau=0.5, hard=hard, generator=np.random.default_rng(8))
        (y * Tensor(weights)).sum().backward()
        grads.append(x.grad)
        values.append(y.data)
    soft, hard = values
    assert set(np.unique(hard)) == {0.0, 1.0} and np.all(hard.sum(axis=1) == 1)
    assert np.array_equal(hard.argmax(axis=1), soft.argmax(axis=1))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)  # straight-through: d(soft)


# ----------------------------------------------------------------------------- the model


def test_shapes_and_the_api_of_stage_two():
    model = tiny()
    assert model.grid == (4, 4) and model.K == 7
    x = images()
    assert model.encode(x).shape == (3, 7, 4, 4)
    assert model(x, tau=0.5).shape == (3, 6, 8, 8)
    codes = model.encode_codes(x)
    assert codes.shape == (3, 4, 4) and codes.dtype == np.int64 and codes.max() < 7
    out = model.decode_codes(codes)
    assert out.shape == (3, 3, 8, 8) and out.min() >= 0 and out.max() <= 1


def test_decoder_reads_the_mixture_of_codebook_vectors():
    """Decoding a relaxed code equals decoding hard codes whose vectors are the mixtures."""
    model = tiny()
    soft = np.random.default_rng(9).random((1, 7, 4, 4)).astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    mixtures = np.einsum("bkhw,kd->hwd", soft, model.codebook.data).reshape(16, 6)  # one per cell
    other = tiny(vocab_size=16)  # the same decoder, with code h * 4 + w standing for cell (h, w)'s mixture
    state = model.state_dict()
    state["codebook"] = mixtures
    state["enc_out.weight"], state["enc_out.bias"] = other.enc_out.weight.data, other.enc_out.bias.data
    other.load_state_dict(state)
    np.testing.assert_allclose(other.decode_codes(np.arange(16).reshape(1, 4, 4)),
                               model.pixels_from_stats(model.decode(Tensor(soft))), rtol=1e-4, atol=1e-6)


def test_elbo_terms_against_numpy():
    for likelihood in ("logit_laplace", "mse"):
        model = tiny(likelihood=likelihood)
        x = images(2)
        manual_seed(11)
        stats = model(x, tau=0.7, hard=True).data
        manual_seed(11)
        nll, kl = model.elbo_terms(x, tau=0.7, hard=True)
        mu = stats[:, :3].astype(np.float64)
        if likelihood == "logit_laplace":
            b = np.exp(stats[:, 3:].astype(np.float64))
            xm = 0.8 * x.astype(np.float64) + 0.1
            log_p = -np.log(2 * b * xm * (1 - xm)) - np.abs(np.log(xm / (1 - xm)) - mu) / b
        else:
            log_p = -0.5 * (1 / (1 + np.exp(-mu)) - x) ** 2
        np.testing.assert_allclose(nll.data, -log_p.sum(axis=(1, 2, 3)), rtol=2e-4)
        logits = model.encode(x).data.astype(np.float64)
        q = np.exp(logits - logits.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(kl.data, (q * np.log(q * 7)).sum(axis=(1, 2, 3)), rtol=1e-4, atol=1e-5)
        manual_seed(11)
        loss = model.loss(x, tau=0.7, beta=2.5, hard=True).item()
        assert loss == pytest.approx(float(np.mean(nll.data + 2.5 * kl.data)) / (3 * 64), rel=1e-5)


def test_soft_and_hard_both_train_the_encoder():
    for hard in (False, True):
        model = tiny()
        model.loss(images(), tau=0.5, beta=1.0, hard=hard).backward()
        assert np.abs(model.enc_out.weight.grad).sum() > 0 and np.abs(model.codebook.grad).sum() > 0


def test_checkpoint_round_trip(tmp_path):
    model = tiny(likelihood="mse", blocks_per_group=2)
    save_checkpoint(model, tmp_path / "dvae.safetensors", steps=3)
    back = load_checkpoint(DiscreteVAE, tmp_path / "dvae.safetensors")
    assert back.config == model.config
    x = images()
    assert np.array_equal(back.encode_codes(x), model.encode_codes(x))
    codes = model.encode_codes(x)
    np.testing.assert_array_equal(back.decode_codes(codes), model.decode_codes(codes))


def test_bad_inputs_raise():
    model = tiny()
    with pytest.raises(ValueError, match="images must be"):
        model.encode(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="floating point"):
        model.encode(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="codes must be"):
        model.decode_codes(np.zeros((2, 3, 3), np.int64))
    with pytest.raises(ValueError, match=r"lie in \[0, 7\)"):
        model.decode_codes(np.full((1, 4, 4), 7))
    with pytest.raises(ValueError, match="likelihood"):
        tiny(likelihood="gaussian")
    with pytest.raises(ValueError, match="divisible"):
        tiny(image_size=10, widths=(2, 4, 8))
    with pytest.raises(ValueError, match="uint8"):
        pixels(np.zeros((2, 8, 8, 3), np.float32))


# ----------------------------------------------------------------------------- the per-patch encoder


def test_space_to_depth_by_hand_and_its_inverse():
    x = images(2, 8)
    y = space_to_depth(Tensor(x), 2).numpy()
    assert y.shape == (2, 12, 4, 4)
    # channel (c, i, j) = c * 4 + i * 2 + j of cell (r, s) holds pixel (2 r + i, 2 s + j) of channel c
    assert y[1, 2 * 4 + 1 * 2 + 0, 3, 1] == x[1, 2, 7, 2]
    assert y[0, 0 * 4 + 0 * 2 + 1, 0, 2] == x[0, 0, 0, 5]
    np.testing.assert_array_equal(depth_to_space(Tensor(y), 2).numpy(), x)


def test_a_patch_code_reads_and_draws_its_own_patch_only():
    model = tiny(encoder="patch", widths=(8, 8), vocab_size=9)
    assert model.grid == (4, 4) and model.factor == 2
    x = images()
    changed = x.copy()
    changed[:, :, 2:4, 4:6] = 1.0 - changed[:, :, 2:4, 4:6]  # the pixels of cell (1, 2)
    moved = np.abs(model.encode(changed).numpy() - model.encode(x).numpy()).max(axis=(0, 1))  # (4, 4)
    assert moved[1, 2] > 0 and np.count_nonzero(moved) == 1
    codes = model.encode_codes(x)
    other = codes.copy()
    other[:, 3, 0] = (other[:, 3, 0] + 1) % 9
    drawn = np.abs(model.decode_codes(other) - model.decode_codes(codes)).max(axis=(0, 1))  # (8, 8)
    assert drawn[6:8, 0:2].min() > 0 and np.count_nonzero(drawn) == 4


def test_the_patch_decoder_starts_at_the_mean_pixel_and_round_trips(tmp_path):
    model = tiny(encoder="patch", widths=(8, 8), likelihood="mse").init_output_bias([0.2, 0.5, 0.7])
    with_zero_weights = model.state_dict()
    with_zero_weights["dec_out.weight"] = np.zeros_like(with_zero_weights["dec_out.weight"])
    model.load_state_dict(with_zero_weights)
    out = model.decode_codes(np.zeros((1, 4, 4), np.int64))
    np.testing.assert_allclose(out[0, :, 5, 3], [0.2, 0.5, 0.7], rtol=1e-5)
    save_checkpoint(model, tmp_path / "patch.safetensors")
    back = load_checkpoint(DiscreteVAE, tmp_path / "patch.safetensors")
    assert back.config.encoder == "patch"
    x = images()
    assert np.array_equal(back.encode_codes(x), model.encode_codes(x))
    with pytest.raises(ValueError, match="encoder"):
        tiny(encoder="dense")
