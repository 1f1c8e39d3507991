"""How DALL-E's discrete VAE is trained and evaluated (stage 1; lecture S21, S23, S25).

* data: 32 x 32 shapes-world scenes of 1-4 objects, each in its own cell of a
  2 x 2 grid (``WORLD``), the layout the judge (``recipes/judge.py``) reads
  and the prior (``recipes/dalle.py``) draws. Training scenes never show a
  held-out (colour, shape) pair, so a held-out pair is new to the dVAE too;
  the test scenes are an i.i.d. part no training image is in (``key="scene"``),
  plus a set showing held-out pairs.
* schedules (paper, sec. 2.1 and A.2): the Gumbel-softmax temperature decays
  exponentially from 1 to 1/16 over the first ``anneal`` fraction of the run;
  beta (the KL weight) rises linearly from 0 to ``beta`` over ``beta_warmup``
  steps; AdamW with warm-up and cosine decay. Not in the paper: a small penalty
  on a peaked code histogram of each batch (``diversity``; ``usage_kl`` in the
  model), without which the codebook collapsed at this scale (see DEFAULTS).
* ``evaluate``: PSNR of the reconstructions from argmax codes (what the prior's
  tokens can show) on held-out images, the negative ELBO terms, and codebook
  usage: the perplexity of the code histogram and the number of dead codes.
* ``finetune_decoder`` (not in the paper): train the decoder alone on the frozen
  encoder's argmax codes; the codes, hence the prior, stay as they were
  (``--finetune-decoder STEPS``; ``--init PATH`` for a saved dVAE other than the default).

``default_dvae()`` is the trained default the prior starts from: loaded from
the cache (``$MINIVL_CACHE`` or ``~/.cache/minivl``) or trained once and cached.

    python -m minivl.recipes.dvae --out results/dvae.json --seeds 0 1

writes the figures of both seeds and the pictures beside the JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.data import ShapesWorld
from minivl.models.dvae import DiscreteVAE, pixels
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import Tensor, no_grad
from minivl.train import run_eval, train

WORLD = dict(image_size=32, grid=2, min_objects=1, max_objects=4)  # the layout stage 1 and 2 share
TAU_END = 1 / 16
# The first defaults (logit-Laplace, beta 1, tau to 1/16 at 60% of the run) collapsed the codebook
# (4 of 256 codes, PSNR 16.0 dB: results/dvae_logit_laplace.json). Causes found on small runs
# (lectures/09-dalle.md, S25): the logit-Laplace density on the exactly black background (87% of
# the pixels, all mapped to 0.1) is unbounded as b -> 0, so the loss kept falling by sharpening
# the background while the objects stayed blurred; with MSE, sigmoid(mu) started at 0.5 on
# black images and the first steps saturated it at black; a fast anneal and nothing against a
# peaked code histogram let the encoder settle on a few codes within ~50 steps. Now: MSE, the
# decoder's bias at the mean pixel, tau annealed over the whole run, a small penalty on a peaked
# batch code histogram (``diversity``, ``minivl/models/dvae.py::usage_kl``), and a zero bias on
# the logits layer at init. 2000 steps (827 s on two shared cores, load 2.8:
# results/dvae.json): at 400 the held-out PSNR was still rising (21.3 dB, 141 codes in use;
# results/dvae.json at commit 05aedb6).
# Widths (16, 32): two groups, one max-pool, a 16 x 16 grid of codes (2 x 2 pixels each), 1200 steps.
# The 8 x 8 grid of widths (16, 32, 64) drew small shapes as round blobs: the judge read 26.7% /
# 36.7% of its reconstructions exactly, 100% of the originals (results/dvae_8x8.json,
# results/judge_dvae8x8.json). At 400 steps on 300 test images (probes, not committed): 16 x 16
# (16, 32) 33% exact at 24.4 dB; 8 x 8 with K = 1024 7% at 21.3 dB; 16 x 16 straight-through 22%.
# A wider 8 x 8 (widths (32, 64, 128), K = 512 of width 128, 1500 steps) read 33.7% at 26.0 dB
# (results/dvae_8x8_wide.json, results/judge_dvae8x8_wide.json). What 16 x 16 loses is small rings
# read as circles and small crosses as diamonds (results/judge_recon_confusion.json). The codes keep
# that detail: 2000 more steps of the decoder alone on the fixed argmax codes (finetune_decoder) lift the
# judge's reading of the reconstructions to 85.7% / 94.7% (results/judge_dvae_decoder_finetune.json);
# not yet part of this default.
DEFAULTS = dict(steps=1200, batch_size=32, lr=3e-3, beta=0.01, beta_warmup=100, anneal=1.0,
                diversity=0.002, vocab_size=256, widths=(16, 32), codebook_dim=64,
                blocks_per_group=1, likelihood="mse", hard=False, n_train=20000, encoder="conv")


def make_world(seed=0, **overrides) -> ShapesWorld:
    """The shapes world of the DALL-E recipes (``WORLD``, with ``overrides``)."""
    return ShapesWorld(**{**WORLD, **overrides}, seed=seed)


def dvae_data(n_train=20000, n_test=500, seed=0) -> dict:
    """uint8 renders: ``train`` (no held-out pair), ``test`` (i.i.d., no training image)
    and ``held_out`` (every image shows a held-out colour-shape pair)."""
    world = make_world(seed)
    train_scenes = world.iid_scenes(n_train, "train", split="train", key="scene")
    test_scenes = world.iid_scenes(n_test, "test", split="train", key="scene", rng=1000 + seed)
    held_scenes = world.scenes(n_test, split="test", rng=2000 + seed)
    return {"train": world.render(train_scenes), "test": world.render(test_scenes),
            "held_out": world.render(held_scenes), "test_scenes": test_scenes,
            "held_out_scenes": held_scenes}


def tau_at(step, steps, anneal=0.6, end=TAU_END) -> float:
    """Gumbel-softmax temperature: 1 at step 0, decaying exponentially to ``end`` at
    ``anneal * steps``, then held."""
    span = max(1.0, anneal * steps)
    return float(max(end, end ** (step / span)))


def beta_at(step, beta, warmup) -> float:
    """KL weight: a linear warm-up from 0 to ``beta`` over ``warmup`` steps."""
    return float(beta * min(1.0, step / warmup)) if warmup else float(beta)


def batches(images, batch_size, seed, start=0):
    """Random float batches ``(B, 3, S, S)`` in [0, 1] forever; batch ``s`` depends on ``(seed, s)``."""
    step = start
    while True:
        step += 1
        pick = np.random.default_rng([seed, step]).choice(len(images), batch_size, replace=False)
        yield pixels(images[pick])


def code_usage(codes, K) -> dict:
    """Perplexity exp(H) of the histogram of ``codes`` (any shape) and the count of unused codes."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=K)
    p = counts / counts.sum()
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    return {"perplexity": float(np.exp(entropy)), "dead_codes": int(np.sum(counts == 0)),
            "used_codes": int(np.sum(counts > 0))}


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1]: 10 log10(1 / MSE)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


def reconstruct(model, images, batch_size=250) -> np.ndarray:
    """uint8 renders -> float reconstructions ``(N, 3, S, S)`` through argmax codes."""
    return np.concatenate([model.reconstruct(pixels(images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def encode_all(model, images, batch_size=250) -> np.ndarray:
    """uint8 renders -> argmax codes ``(N, h, w)``."""
    return np.concatenate([model.encode_codes(pixels(images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def evaluate(model, evals) -> dict:
    """PSNR (argmax codes) on the test and held-out-pair images, the negative ELBO terms
    in nats per image (hard codes, tau = 1/16), and the codebook usage on the test images."""
    out = {}
    for name in ("test", "held_out"):
        images = evals[name]
        out[f"psnr_{name}"] = psnr(reconstruct(model, images), pixels(images))
    x = pixels(evals["test"][:200])
    nll, kl = model.elbo_terms(x, TAU_END, hard=True)
    out["nll_test"] = float(nll.data.mean())
    out["kl_test"] = float(kl.data.mean())
    usage = code_usage(encode_all(model, evals["test"]), model.K)
    return {**out, **usage}


def train_dvae(steps=None, batch_size=None, lr=None, beta=None, beta_warmup=None, anneal=None,
               diversity=None, vocab_size=None, widths=None, codebook_dim=None, blocks_per_group=None,
               likelihood=None, hard=None, n_train=None, n_test=500, eval_every=150, seed=0,
               progress=True, data=None, encoder=None) -> dict:
    """Train a DiscreteVAE on the shapes world; every argument left None takes ``DEFAULTS``.

    Returns ``{"model", "history", "metrics", "evals", "taus", "betas"}``;
    ``metrics`` the final evaluation and the run's settings and timings
    (``load_average``: the machine's 1-minute load when training ended; the
    machine is shared, so seconds are inflated when it is above the core count).
    """
    given = dict(steps=steps, batch_size=batch_size, lr=lr, beta=beta, beta_warmup=beta_warmup,
                 anneal=anneal, diversity=diversity, vocab_size=vocab_size, widths=widths,
                 codebook_dim=codebook_dim, blocks_per_group=blocks_per_group, likelihood=likelihood, hard=hard,
                 n_train=n_train, encoder=encoder)
    cfg = {k: (DEFAULTS[k] if v is None else v) for k, v in given.items()}
    began = time.perf_counter()
    manual_seed(seed)
    evals = data or dvae_data(cfg["n_train"], n_test, seed)
    model = DiscreteVAE(image_size=WORLD["image_size"], vocab_size=cfg["vocab_size"],
                        widths=tuple(cfg["widths"]), codebook_dim=cfg["codebook_dim"],
                        blocks_per_group=cfg["blocks_per_group"], likelihood=cfg["likelihood"],
                        encoder=cfg["encoder"])
    model.init_output_bias(pixels(evals["train"][:2000]).mean(axis=(0, 2, 3)))  # the mean pixel
    params = model.parameters()
    optimizer = AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 1e-4},
                       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                      lr=cfg["lr"])
    n = cfg["steps"]
    scheduler = WarmupCosineLR(optimizer, n, min(100, n - 1), min_lr=cfg["lr"] / 20)
    taus, betas = [], []

    def loss_fn(m, batch):
        s = len(taus)  # steps taken so far
        taus.append(tau_at(s, n, cfg["anneal"]))
        betas.append(beta_at(s, cfg["beta"], cfg["beta_warmup"]))
        return m.loss(batch, taus[-1], betas[-1], cfg["hard"], cfg["diversity"])

    data_seconds = time.perf_counter() - began
    start = {"step": 0, **run_eval(model, lambda: evaluate(model, evals))}
    history = train(model, loss_fn, batches(evals["train"], cfg["batch_size"], seed), optimizer, n,
                    scheduler, clip_norm=1.0, evaluate=lambda: evaluate(model, evals),
                    eval_every=eval_every, progress=progress, desc="dvae")
    history.after(0, start)
    metrics = {**history.last_eval(), **cfg, "widths": list(cfg["widths"]), "seed": seed,
               "grid": list(model.grid), "image_size": WORLD["image_size"],
               "parameters": model.num_parameters(), "train_seconds": history.seconds,
               "data_seconds": data_seconds, "load_average": os.getloadavg()[0],
               "cpu_count": os.cpu_count()}
    return {"model": model, "history": history, "metrics": metrics, "evals": evals,
            "taus": taus, "betas": betas}


# ----------------------------------------------------------------------------- the decoder alone


def finetune_decoder(model, images, steps=1000, batch_size=32, lr=1e-3, seed=0, evaluate=None,
                     eval_every=0, progress=True):
    """Train only the decoder and codebook of ``model`` (in place) on the argmax codes its frozen
    encoder gives ``images`` (uint8 renders), by its reconstruction likelihood (hard codes, no KL).

    Not in the paper (its dVAE is trained once, end to end). The codes do not change, so a prior
    trained on them is still valid: this asks whether small detail (a small ring's hole, a small
    cross's inner corners) is lost by the codes or by a decoder trained too little on hard codes
    (lecture S25). Returns the training ``History``; the model is left in eval mode.
    """
    codes = encode_all(model, images)  # (N, h, w), fixed from here on
    params = [p for name, p in model.named_parameters() if name.startswith(("dec_", "codebook"))]
    optimizer = AdamW(params, lr=lr, weight_decay=0.0)
    eye = np.eye(model.K, dtype=np.float32)
    dims = model.config.in_channels * model.config.image_size ** 2

    def code_batches():
        step = 0
        while True:
            step += 1
            pick = np.random.default_rng([seed, step, 2]).choice(len(images), batch_size, replace=False)
            yield np.moveaxis(eye[codes[pick]], -1, 1), pixels(images[pick])  # (B, K, h, w), (B, C, S, S)

    def loss_fn(m, batch):
        one_hot, x = batch
        nll = m.reconstruction_nll(x, m.decode(Tensor(one_hot)))  # (B,)
        return (nll * (1.0 / dims)).mean()

    history = train(model, loss_fn, code_batches(), optimizer, steps, None, clip_norm=1.0, evaluate=evaluate,
                    eval_every=eval_every, progress=progress, desc="dvae decoder")
    model.eval()
    return history


# ----------------------------------------------------------------------------- the cached default


from minivl.checkpoint import cache_dir  # noqa: E402  (re-exported: judge and dalle import it from here)


def default_path(seed=0) -> Path:
    settings = {k: v for k, v in DEFAULTS.items() if not (k == "encoder" and v == "conv")}  # keys of old caches
    key = json.dumps({**settings, "widths": list(DEFAULTS["widths"]), **WORLD, "seed": seed},
                     sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir() / f"dvae-{digest}.safetensors"


def default_dvae(seed=0, progress=True, path=None) -> DiscreteVAE:
    """The default dVAE in eval mode: loaded from ``path`` (default: the cache), or
    trained with ``DEFAULTS`` (a few minutes) and saved there first."""
    path = Path(path) if path else default_path(seed)
    if not path.exists():
        run = train_dvae(seed=seed, progress=progress)
        save_checkpoint(run["model"], path, **{k: v for k, v in run["metrics"].items()
                                               if isinstance(v, (int, float, str))})
    return load_checkpoint(DiscreteVAE, path).eval()


def load_dvae(path) -> DiscreteVAE:
    """A DiscreteVAE saved with ``save_checkpoint`` (e.g. by ``default_dvae``), in eval mode."""
    return load_checkpoint(DiscreteVAE, path).eval()


# ----------------------------------------------------------------------------- results


def _figures(run, folder, tag, name="dvae"):
    """Originals vs reconstructions, and what each of the first codes draws."""
    from minivl.models.dvae import to_uint8
    from minivl.viz import image_grid

    model, evals = run["model"], run["evals"]
    originals = evals["test"][:8]
    held = evals["held_out"][:8]
    recon = to_uint8(reconstruct(model, originals))
    recon_held = to_uint8(reconstruct(model, held))
    fig = image_grid(np.concatenate([originals, recon, held, recon_held]), ncols=8, panel_size=1.0)
    fig.suptitle("rows: test originals, their reconstructions (argmax codes); "
                 "held-out-pair originals, reconstructions", fontsize=8)
    fig.savefig(folder / f"{name}_reconstructions{tag}.png", dpi=100)
    # "what a code means": a grid filled with one code, for the most used codes
    codes = encode_all(model, evals["test"])
    top = np.argsort(-np.bincount(codes.ravel(), minlength=model.K))[:32]
    with no_grad():
        single = model.decode_codes(np.broadcast_to(top[:, None, None], (len(top), *model.grid)).copy())
    fig = image_grid(to_uint8(single), captions=[f"code {k}" for k in top], ncols=8, panel_size=1.0)
    fig.suptitle("the 32 most used codes, each decoded from a grid filled with it", fontsize=8)
    fig.savefig(folder / f"{name}_codes{tag}.png", dpi=100)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/dvae.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--likelihood", choices=("logit_laplace", "mse"), default=None)
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--hard", action="store_true", help="straight-through Gumbel-softmax codes")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--diversity", type=float, default=None,
                        help="weight of the batch code-histogram penalty (0: the plain ELBO)")
    parser.add_argument("--anneal", type=float, default=None,
                        help="fraction of the run over which tau decays from 1 to 1/16")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="encoder/decoder widths, one group each (3 groups: an 8 x 8 grid)")
    parser.add_argument("--vocab-size", type=int, default=None, help="K, the codebook size")
    parser.add_argument("--codebook-dim", type=int, default=None)
    parser.add_argument("--encoder", choices=("conv", "patch"), default=None,
                        help="conv: the paper's residual encoder / decoder; patch: each code from and to its own "
                        "f x f pixel patch (not the paper's; minivl/models/dvae.py)")
    parser.add_argument("--save", default=None,
                        help="also save each seed's model there ('{seed}' in the path is replaced)")
    parser.add_argument("--finetune-decoder", type=int, default=0, metavar="STEPS",
                        help="instead of training: load each seed's cached default dVAE and train only its "
                        "decoder + codebook STEPS steps on its own frozen argmax codes (save it with --save)")
    parser.add_argument("--init", default=None,
                        help="with --finetune-decoder: this dVAE checkpoint ('{seed}' replaced) instead of the "
                        "cached default")
    parser.add_argument("--cache", action="store_true",
                        help="also save each seed's model as its cached default_dvae(seed)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = {}
    for seed in args.seeds:
        if args.finetune_decoder:
            start = Path(args.init.replace("{seed}", str(seed))) if args.init else default_path(seed)
            model = load_dvae(start) if args.init else default_dvae(seed)
            evals = dvae_data(DEFAULTS["n_train"], 500, seed)
            before = evaluate(model, evals)
            history = finetune_decoder(model, evals["train"], args.finetune_decoder, seed=seed,
                                       evaluate=lambda m=model, e=evals: evaluate(m, e),
                                       eval_every=max(1, args.finetune_decoder // 4))
            metrics = {"from": str(start), "steps": args.finetune_decoder, "seed": seed,
                       "before": before, "after": history.last_eval(), "train_seconds": history.seconds,
                       "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count()}
            if args.save:
                save_checkpoint(model, args.save.replace("{seed}", str(seed)),
                                **{"steps": args.finetune_decoder, "finetuned_from": str(start)})
            runs[str(seed)] = {"metrics": metrics, "history": history.as_dict(),
                               "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            _figures({"model": model, "evals": evals}, out.parent, f"_seed{seed}", out.stem)
            print(json.dumps({k: metrics[k]["psnr_test"] for k in ("before", "after")}))
            continue
        run = train_dvae(seed=seed, steps=args.steps, likelihood=args.likelihood, beta=args.beta,
                         hard=args.hard or None, lr=args.lr, diversity=args.diversity,
                         anneal=args.anneal, widths=args.widths, vocab_size=args.vocab_size,
                         codebook_dim=args.codebook_dim, encoder=args.encoder)
        if args.save:
            save_checkpoint(run["model"], args.save.replace("{seed}", str(seed)),
                            **{k: v for k, v in run["metrics"].items() if isinstance(v, (int, float, str))})
        runs[str(seed)] = {"metrics": run["metrics"], "history": run["history"].as_dict(),
                           "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        _figures(run, out.parent, f"_seed{seed}", out.stem)
        tuned = (args.steps, args.likelihood, args.beta, args.lr, args.diversity, args.anneal,
                 args.widths, args.vocab_size, args.codebook_dim, args.encoder)
        if args.cache and tuned == (None,) * len(tuned) and not args.hard:
            save_checkpoint(run["model"], default_path(seed),
                            **{k: v for k, v in run["metrics"].items() if isinstance(v, (int, float, str))})
        print(json.dumps({k: v for k, v in run["metrics"].items()
                          if k in ("psnr_test", "psnr_held_out", "perplexity", "dead_codes",
                                   "train_seconds", "load_average")}))
    # seeds run by separate invocations (in parallel) are merged into one file
    before = json.loads(out.read_text())["runs"] if out.exists() else {}
    command = "python -m minivl.recipes.dvae " + " ".join(argv if argv is not None else [])
    out.write_text(json.dumps({"command": command, "world": WORLD, "runs": {**before, **runs}},
                              indent=1))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

