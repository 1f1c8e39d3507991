"""How the S20 VAE is trained on the 8 x 8 digits and what it is shown with.

* data: ``load_digits`` (scikit-learn's 1,797 digits, a seeded 80/10/10 split),
  ink mapped to [0, 1] and flattened to 64 numbers;
* ``train_vae``: Adam on the negative ELBO (one reparameterised sample);
* ``evaluate``: the negative ELBO and its two terms on the test digits, in
  nats per image, and the mean squared error of the reconstructions;
* ``latent_figure``: every test digit's posterior mean in the 2-D latent
  plane, coloured by its label, beside digits decoded from a grid of points
  of that plane.

    python -m minivl.recipes.vae --out results/vae.json --seeds 0 1
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from minivl.data import load_digits
from minivl.models.vae import VAE
from minivl.optim import Adam
from minivl.random import manual_seed
from minivl.train import run_eval, train

DEFAULTS = dict(steps=2000, batch_size=64, lr=2e-3, hidden=128, latent_dim=2)


def digits(split, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, 64) float32 in [0, 1], labels (N,))`` of one split of the digits."""
    d = load_digits(split, seed=seed)
    return d.images.reshape(len(d), -1).astype(np.float32) / 255.0, d.labels


def batches(x, batch_size, seed):
    step = 0
    while True:
        step += 1
        yield x[np.random.default_rng([seed, step]).choice(len(x), batch_size, replace=False)]


def evaluate(model, x, seed=0) -> dict:
    """Negative ELBO (nats per image), its terms, and the reconstruction MSE on ``x``."""
    nll, kl = model.elbo_terms(x, np.random.default_rng(seed))
    return {"neg_elbo": float((nll.data + kl.data).mean()), "nll": float(nll.data.mean()),
            "kl": float(kl.data.mean()), "mse": float(np.mean((model.reconstruct(x) - x) ** 2))}


def train_vae(steps=None, batch_size=None, lr=None, hidden=None, latent_dim=None, seed=0,
              progress=True, eval_every=500) -> dict:
    """Train a VAE on the digits; returns ``{"model", "history", "metrics", "data"}``."""
    cfg = {k: (DEFAULTS[k] if v is None else v) for k, v in dict(
        steps=steps, batch_size=batch_size, lr=lr, hidden=hidden, latent_dim=latent_dim).items()}
    manual_seed(seed)
    x_train, _ = digits("train", seed)
    x_test, y_test = digits("test", seed)
    model = VAE(input_dim=x_train.shape[1], hidden=cfg["hidden"], latent_dim=cfg["latent_dim"])
    optimizer = Adam(model.parameters(), lr=cfg["lr"])
    start = {"step": 0, **run_eval(model, lambda: evaluate(model, x_test, seed))}
    history = train(model, lambda m, b: m.loss(b), batches(x_train, cfg["batch_size"], seed),
                    optimizer, cfg["steps"], clip_norm=5.0, progress=progress, desc="vae",
                    evaluate=lambda: evaluate(model, x_test, seed), eval_every=eval_every)
    history.after(0, start)
    model.eval()
    metrics = {**history.last_eval(), **cfg, "seed": seed, "train_seconds": history.seconds,
               "load_average": os.getloadavg()[0], "parameters": model.num_parameters()}
    return {"model": model, "history": history, "metrics": metrics,
            "data": {"train": x_train, "test": (x_test, y_test)}}


def latent_figure(model, x, labels, n=12, span=2.5):
    """Left: posterior means of ``x`` coloured by digit; right: digits decoded from an
    ``n x n`` grid of latent points in ``[-span, span]^2`` (the prior's bulk)."""
    from matplotlib.figure import Figure

    mu = np.asarray(model.encode(x)[0].data)
    fig = Figure(figsize=(10, 4.6))
    ax, ax2 = fig.subplots(1, 2)
    points = ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=8)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set(title="posterior means of the test digits", xlabel="z1", ylabel="z2")
    side = int(np.sqrt(model.config.input_dim))
    values = np.linspace(-span, span, n)
    grid = np.array([[a, b] for b in values[::-1] for a in values], dtype=np.float32)  # row 0: top
    tiles = model.generate(grid).reshape(n, n, side, side)
    ax2.imshow(tiles.transpose(0, 2, 1, 3).reshape(n * side, n * side), cmap="gray",
               extent=(-span, span, -span, span))
    ax2.set(title="decoded from a grid of z", xlabel="z1", ylabel="z2")
    return fig


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/vae.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = {}
    for seed in args.seeds:
        run = train_vae(seed=seed)
        runs[str(seed)] = {"metrics": run["metrics"], "history": run["history"].as_dict()}
        x, y = run["data"]["test"]
        latent_figure(run["model"], x, y).savefig(out.parent / f"vae_latent_seed{seed}.png", dpi=100)
        print(json.dumps(run["metrics"]))
    command = "python -m minivl.recipes.vae " + " ".join(argv if argv is not None else [])
    out.write_text(json.dumps({"command": command, "runs": runs}, indent=1))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
