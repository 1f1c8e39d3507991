"""The S20 VAE (``minivl/models/vae.py``): the closed-form KL against a Monte-Carlo
estimate and against PyTorch, the reparameterised sample (its statistics and its
gradient), the ELBO terms against NumPy, shapes, errors and the checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.vae import VAE, gaussian_kl, gaussian_log_prob
from minivl.tensor import Tensor
from minivl.testing import gradcheck


def test_closed_form_kl_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    mu, log_var = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)) * 0.5
    exact = gaussian_kl(Tensor(mu), Tensor(log_var)).data
    n = 200000
    z = mu + np.exp(0.5 * log_var) * rng.standard_normal((n, 3, 2))  # (n, 3, 2) samples of q
    terms = gaussian_log_prob(z, mu, log_var) - gaussian_log_prob(z, 0.0, 0.0)  # log q - log p
    estimate, stderr = terms.mean(axis=0), terms.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(estimate - exact) < 4 * stderr + 1e-9), (estimate, exact, stderr)


def test_kl_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    mu, log_var = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * log_var)))
    p = torch.distributions.Normal(torch.zeros(4, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64))
    want = torch.distributions.kl_divergence(q, p).sum(-1).numpy()
    np.testing.assert_allclose(gaussian_kl(Tensor(mu), Tensor(log_var)).data, want, rtol=1e-12)


def test_reparameterised_sample_has_the_posterior_statistics_and_gradients():
    mu, log_var = np.array([[1.5, -0.5]]), np.array([[0.4, -1.0]])
    z = VAE.sample(Tensor(np.repeat(mu, 100000, 0)), Tensor(np.repeat(log_var, 100000, 0)),
                   np.random.default_rng(2)).data
    np.testing.assert_allclose(z.mean(0), mu[0], atol=0.02)
    np.testing.assert_allclose(z.var(0), np.exp(log_var[0]), rtol=0.03)
    m = Tensor(mu.copy(), requires_grad=True)
    lv = Tensor(log_var.copy(), requires_grad=True)
    gradcheck(lambda a, b: VAE.sample(a, b, np.random.default_rng(3)), m, lv)


def test_elbo_terms_against_numpy():
    model = VAE(input_dim=6, hidden=5, latent_dim=2)
    x = np.random.default_rng(4).random((3, 6)).astype(np.float32)
    nll, kl = model.elbo_terms(x, np.random.default_rng(5))
    mu, log_var = (t.data.astype(np.float64) for t in model.encode(x))
    z = mu + np.exp(0.5 * log_var) * np.random.default_rng(5).standard_normal(mu.shape)
    logits = model.decode(z.astype(np.float32)).data.astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    by_hand = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(nll.data, by_hand, rtol=1e-4)
    np.testing.assert_allclose(kl.data, 0.5 * (mu**2 + np.exp(log_var) - 1 - log_var).sum(1), rtol=1e-5)
    loss = model.loss(x, beta=0.5, generator=np.random.default_rng(5)).item()
    assert loss == pytest.approx(float(np.mean(by_hand + 0.5 * kl.data)), rel=1e-4)


def test_shapes_errors_and_checkpoint(tmp_path):
    model = VAE(input_dim=64, hidden=8, latent_dim=2)
    x = np.random.default_rng(6).random((5, 64)).astype(np.float32)
    assert model(x).shape == (5, 64) and model.reconstruct(x).shape == (5, 64)
    assert model.generate(np.zeros((3, 2), np.float32)).shape == (3, 64)
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        model.encode(np.zeros((5, 8, 8), np.float32))
    save_checkpoint(model, tmp_path / "vae.safetensors")
    back = load_checkpoint(VAE, tmp_path / "vae.safetensors")
    np.testing.assert_array_equal(back.reconstruct(x), model.reconstruct(x))


def test_generate_is_the_sigmoid_of_the_decoder_even_far_out():
    import warnings

    model = VAE(input_dim=4, hidden=3, latent_dim=2)
    z = np.array([[0.3, -0.2], [1e4, -1e4]], np.float32)  # the second drives logits to +-1e3
    logits = model.decode(z).numpy().astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in exp
        out = model.generate(z)
    np.testing.assert_allclose(out[0], 1 / (1 + np.exp(-logits[0])), rtol=1e-6)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
