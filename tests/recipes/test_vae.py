"""The VAE recipe (``minivl/recipes/vae.py``): the digits as 64 numbers in [0, 1],
a short run lowers the test negative ELBO, and the latent figure draws both panels."""

from __future__ import annotations

import numpy as np

from minivl.recipes.vae import digits, latent_figure, train_vae


def test_digits_are_flat_and_in_the_unit_interval():
    x, y = digits("test")
    assert x.shape[1] == 64 and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) <= set(range(10))


def test_a_short_run_lowers_the_negative_elbo_and_draws_the_latent_plane():
    run = train_vae(steps=60, progress=False, eval_every=60)
    first, last = run["history"].evals[0], run["history"].evals[-1]
    assert first["step"] == 0 and last["step"] == 60
    assert last["neg_elbo"] < first["neg_elbo"] - 5  # from ~45 nats towards ~25
    x, y = run["data"]["test"]
    fig = latent_figure(run["model"], x, y, n=4)
    assert len(fig.axes) == 3  # scatter, its colour bar, decoded grid
