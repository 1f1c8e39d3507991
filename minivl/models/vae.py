"""A small continuous VAE, the recap of lecture S20 (Kingma & Welling 2014).

    x (B, D) -> encoder MLP -> mu, log sigma^2  (B, Z)      q(z | x) = N(mu, diag sigma^2)
    z = mu + sigma * eps,  eps ~ N(0, I)                     the reparameterisation trick
    z -> decoder MLP -> logits (B, D)                        p(x | z) = Bernoulli(sigmoid(logits))

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))
    KL      = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)     (closed form)

The expectation is estimated with one sample of z; the KL needs no sample.
On the 8 x 8 digits the ink intensity in [0, 1] is read as the Bernoulli's
probability (the usual convention for grey MNIST). With a 2-D latent the
whole code space can be drawn: ``recipes/vae.py`` colours it by digit and
decodes a grid of points from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.random import rng as _global_rng
from minivl.tensor import Tensor, no_grad


def _sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for large negative x (exp(-logaddexp(0, -x)))."""
    return np.exp(-np.logaddexp(0.0, -x))


def gaussian_kl(mu, log_var) -> Tensor:
    """KL(N(mu, diag exp(log_var)) || N(0, I)) per row, summed over the last axis: ``(B,)``."""
    return 0.5 * (mu * mu + F.exp(log_var) - 1.0 - log_var).sum(axis=-1)


def gaussian_log_prob(z, mu, log_var) -> np.ndarray:
    """log N(z; mu, diag exp(log_var)) per row (NumPy; for Monte-Carlo checks of the KL)."""
    z, mu, log_var = (np.asarray(a, np.float64) for a in (z, mu, log_var))
    return -0.5 * np.sum(math.log(2 * math.pi) + log_var + (z - mu) ** 2 / np.exp(log_var), axis=-1)


@dataclass
class VAEConfig:
    input_dim: int = 64  # 8 x 8 digits, flattened
    hidden: int = 128
    latent_dim: int = 2


class VAE(nn.Module):
    """MLP encoder to a Gaussian posterior, MLP decoder to Bernoulli logits."""

    Config = VAEConfig

    def __init__(self, config: VAEConfig | None = None, **kwargs):
        super().__init__()
        self.config = c = config or VAEConfig(**kwargs)
        self.enc = nn.Linear(c.input_dim, c.hidden)
        self.enc_mu = nn.Linear(c.hidden, c.latent_dim)
        self.enc_log_var = nn.Linear(c.hidden, c.latent_dim)
        self.dec = nn.Sequential(nn.Linear(c.latent_dim, c.hidden), nn.Linear(c.hidden, c.input_dim))

    def _check(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.config.input_dim:
            raise ValueError(f"x must be (B, {self.config.input_dim}) floats in [0, 1], got shape {x.shape}")
        return x

    def encode(self, x) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)`` of q(z | x), each ``(B, Z)``."""
        h = F.relu(self.enc(self._check(x)))
        return self.enc_mu(h), self.enc_log_var(h)

    def decode(self, z) -> Tensor:
        """Bernoulli logits ``(B, D)`` of p(x | z)."""
        z = z if isinstance(z, Tensor) else Tensor(np.asarray(z, dtype=np.float32))
        return self.dec[1](F.relu(self.dec[0](z)))

    def forward(self, x, generator=None) -> Tensor:
        """Logits of the reconstruction through one reparameterised sample of z."""
        mu, log_var = self.encode(x)
        return self.decode(self.sample(mu, log_var, generator))

    @staticmethod
    def sample(mu, log_var, generator=None) -> Tensor:
        """z = mu + sigma * eps: the noise is an input, so the gradient reaches mu and sigma."""
        g = generator or _global_rng()
        eps = Tensor(g.standard_normal(mu.shape).astype(mu.dtype))
        return mu + F.exp(0.5 * log_var) * eps

    def elbo_terms(self, x, generator=None) -> tuple[Tensor, Tensor]:
        """Per row: ``-log p(x | z)`` for one sample z, and the closed-form KL; both ``(B,)``."""
        x = self._check(x)
        mu, log_var = self.encode(x)
        logits = self.decode(self.sample(mu, log_var, generator))
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=-1)
        return nll, gaussian_kl(mu, log_var)

    def loss(self, x, beta=1.0, generator=None) -> Tensor:
        """The negative ELBO, averaged over the batch (nats per image)."""
        nll, kl = self.elbo_terms(x, generator)
        return (nll + beta * kl).mean()

    def reconstruct(self, x) -> np.ndarray:
        """sigmoid(decode(mu)): the reconstruction at the posterior mean, ``(B, D)``."""
        with no_grad():
            mu, _ = self.encode(x)
            return _sigmoid(self.decode(mu).numpy())

    def generate(self, z) -> np.ndarray:
        """Pixel probabilities ``(B, D)`` decoded from latent points ``z (B, Z)``."""
        with no_grad():
            return _sigmoid(self.decode(z).numpy())
