"""How the judge of DALL-E's generations is trained and checked (``minivl.models.judge``).

The judge is an instrument, not a model under test, so it is trained on real
renders of every (colour, shape) pair, held-out pairs included (the dVAE and
the prior never see those): it must read a red triangle the prior was never
shown. Scenes are those of ``recipes/dvae.py::WORLD`` (32 x 32, 1-4 objects,
one per cell of a 2 x 2 grid). Training images get a little Gaussian pixel
noise, so that the judge does not hinge on the exact flat colours of a render.

``evaluate`` reports, on real test images it never saw: cell accuracy, size
accuracy and the fraction of images read exactly (every cell right). With a
dVAE, the same on its reconstructions, the figure the issue asks to stay within
2 points of the originals'.

    python -m minivl.recipes.judge --out results/judge.json --seeds 0 1
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import numpy as np

from minivl import functional as F
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.data.shapes import COLOURS, SHAPES, SIZES
from minivl.models.dvae import pixels
from minivl.models.judge import HEADS, Judge
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.recipes.dvae import WORLD, cache_dir, make_world
from minivl.train import run_eval, train

DEFAULTS = dict(steps=400, batch_size=64, lr=3e-3, noise=0.03, n_train=12000)


def judge_data(n_train=12000, n_test=1000, seed=0) -> dict:
    """Real renders and their scenes: ``train`` (all pairs), ``test`` (an i.i.d. part no
    training image is in), ``held_out`` (every image shows a held-out pair)."""
    world = make_world(seed + 100)
    train_scenes = world.iid_scenes(n_train, "train", key="scene")
    test_scenes = world.iid_scenes(n_test, "test", key="scene", rng=3000 + seed)
    held = world.scenes(n_test, split="test", rng=4000 + seed)
    return {name: (world.render(s), s) for name, s in
            (("train", train_scenes), ("test", test_scenes), ("held_out", held))}


def batches(images, labels, batch_size, seed, noise):
    """Random batches forever: floats with Gaussian pixel noise, and the cell labels
    (shapes, colours, sizes)."""
    step = 0
    while True:
        step += 1
        rng = np.random.default_rng([seed, step])
        pick = rng.choice(len(images), batch_size, replace=False)
        x = pixels(images[pick])
        if noise:
            x = np.clip(x + noise * rng.standard_normal(x.shape, dtype=np.float32), 0, 1)
        yield (x, *(label[pick] for label in labels))


def loss(model, batch):
    """Cross-entropy of the shape (or empty), plus those of colour and size (occupied cells)."""
    x, *labels = batch
    out = model(x)  # (B, g*g, 7 + 6 + 2)
    ends = np.cumsum((0, *HEADS))
    return sum(F.cross_entropy(out[..., a:b], y) for a, b, y in zip(ends[:-1], ends[1:], labels))


def accuracy(model, images, scenes) -> dict:
    """Per cell: shape-or-empty, colour and size accuracy (occupied cells), whole cells right;
    ``exact``: the fraction of images whose every cell is read right."""
    want = model.labels(scenes)
    got = model.predict(images if images.dtype != np.uint8 else pixels(images))
    occupied = want[0] != 0
    ok = [g == w for g, w in zip(got, want)]  # colour and size: -100 == -100 in empty cells
    cells = ok[0] & ok[1] & ok[2]
    return {"shape_accuracy": float(ok[0].mean()), "colour_accuracy": float(ok[1][occupied].mean()),
            "size_accuracy": float(ok[2][occupied].mean()), "cell_accuracy": float(cells.mean()),
            "exact": float(cells.all(axis=1).mean())}


def confusion(model, images, scenes) -> dict:
    """Where the judge goes wrong on ``images`` (floats ``(N, 3, S, S)`` or uint8 renders) of
    ``scenes``, per object size: a shape confusion table (rows: the shape drawn, columns: the
    judge's reading, "empty" first) and the shape accuracy; per colour, the shape accuracy of
    objects of that colour. Only occupied cells count."""
    want_shape, want_colour, want_size = model.labels(scenes)
    got_shape = model.predict(images if images.dtype != np.uint8 else pixels(images))[0]
    names = ("empty", *SHAPES)
    occupied = want_shape != 0
    out = {"columns": list(names), "by_size": {}, "shape_accuracy_by_colour": {}}
    for s, size in enumerate(SIZES):
        m = occupied & (want_size == s)
        table = np.zeros((len(names), len(names)), np.int64)
        np.add.at(table, (want_shape[m], got_shape[m]), 1)
        out["by_size"][size] = {"objects": int(m.sum()),
                                "shape_accuracy": float((got_shape[m] == want_shape[m]).mean()),
                                "table": {names[i]: table[i].tolist() for i in range(1, len(names))}}
    for c, colour in enumerate(COLOURS):
        m = occupied & (want_colour == c)
        out["shape_accuracy_by_colour"][colour] = float((got_shape[m] == want_shape[m]).mean())
    return out


def misread_figure(model, originals, reconstructions, scenes, per_shape=3):
    """A figure of misread cells: for each shape the judge misreads in ``reconstructions``
    (floats), up to ``per_shape`` cells as original | reconstruction | the judge's silhouette."""
    from matplotlib.figure import Figure

    from minivl.models.judge import THRESHOLD

    want = model.labels(scenes)[0]
    got = model.predict(reconstructions)[0]
    g, c = model.config.grid, model.cell
    picks = [(i, k) for shape in range(1, len(SHAPES) + 1)
             for i, k in np.argwhere((want == shape) & (got != shape))[:per_shape].tolist()]
    fig = Figure(figsize=(6, 1.6 * max(1, len(picks))))
    for row, (i, k) in enumerate(picks):
        y, x = (k // g) * c, (k % g) * c
        orig = originals[i][y:y + c, x:x + c]
        recon = reconstructions[i].transpose(1, 2, 0)[y:y + c, x:x + c]
        panels = ((orig, f"drawn: {SHAPES[want[i, k] - 1]}"),
                  (np.clip(recon, 0, 1), f"read: {('empty', *SHAPES)[got[i, k]]}"),
                  (recon.max(axis=-1) > THRESHOLD, "silhouette"))
        for j, (im, title) in enumerate(panels):
            ax = fig.add_subplot(len(picks), 3, 3 * row + j + 1)
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("misread cells: original | dVAE reconstruction | what the judge thresholds", fontsize=8)
    return fig


def evaluate(model, data, dvae=None) -> dict:
    """Accuracy on real test and held-out-pair images; with ``dvae``, on their reconstructions."""
    out = {}
    for name in ("test", "held_out"):
        images, scenes = data[name]
        out.update({f"{name}_{k}": v for k, v in accuracy(model, images, scenes).items()})
        if dvae is not None:
            from minivl.recipes.dvae import reconstruct

            recon = reconstruct(dvae, images).astype(np.float32)
            out.update({f"{name}_recon_{k}": v for k, v in accuracy(model, recon, scenes).items()})
    return out


def train_judge(steps=None, batch_size=None, lr=None, noise=None, n_train=None, n_test=1000, seed=0,
                progress=True, data=None, eval_every=200) -> dict:
    """Train a Judge; returns ``{"model", "history", "metrics", "data"}``."""
    cfg = {k: (DEFAULTS[k] if v is None else v) for k, v in
           dict(steps=steps, batch_size=batch_size, lr=lr, noise=noise, n_train=n_train).items()}
    manual_seed(seed)
    data = data or judge_data(cfg["n_train"], n_test, seed)
    model = Judge(image_size=WORLD["image_size"], grid=WORLD["grid"])
    labels = model.labels(data["train"][1])
    optimizer = AdamW(model.parameters(), lr=cfg["lr"], weight_decay=1e-4)
    scheduler = WarmupCosineLR(optimizer, cfg["steps"], min(50, cfg["steps"] - 1), min_lr=cfg["lr"] / 20)
    history = train(model, loss, batches(data["train"][0], labels, cfg["batch_size"], seed,
                                         cfg["noise"]),
                    optimizer, cfg["steps"], scheduler, clip_norm=1.0,
                    evaluate=lambda: evaluate(model, data), eval_every=eval_every,
                    progress=progress, desc="judge")
    model.eval()
    metrics = {**history.last_eval(), **cfg, "seed": seed, "parameters": model.num_parameters(),
               "train_seconds": history.seconds, "load_average": os.getloadavg()[0]}
    return {"model": model, "history": history, "metrics": metrics, "data": data}


def default_path(seed=0) -> Path:
    return cache_dir() / f"judge-{seed}-{DEFAULTS['steps']}-{DEFAULTS['n_train']}.safetensors"


def default_judge(seed=0, progress=True, path=None) -> Judge:
    """The default judge in eval mode, from the cache or trained once (about a minute)."""
    path = Path(path) if path else default_path(seed)
    if not path.exists():
        save_checkpoint(train_judge(seed=seed, progress=progress)["model"], path)
    return load_checkpoint(Judge, path).eval()


def main(argv=None):
    """Train (or load from the cache) one judge per seed and write the figures; with
    ``--dvae``, also read the reconstructions of that seed's cached default dVAE
    (``python -m minivl.recipes.dvae --cache`` writes it). Runs already in ``--out``
    keep their training record."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/judge.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--dvae", action="store_true",
                        help="also read the reconstructions of the cached default dVAE of each seed")
    parser.add_argument("--dvae-path", default=None,
                        help="with --dvae: this dVAE checkpoint ('{seed}' replaced) instead of the cached default")
    parser.add_argument("--n-test", type=int, default=1000,
                        help="test and held-out-pair images per seed when a saved judge is re-read")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text())["runs"] if out.exists() else {}
    for seed in args.seeds:
        path = default_path(seed)
        if path.exists():  # trained before: reload it, keep its training record if this file has it
            model, data = load_checkpoint(Judge, path).eval(), judge_data(DEFAULTS["n_train"], args.n_test, seed)
            record = runs.get(str(seed)) or {"metrics": {**run_eval(model, partial(evaluate, model, data)),
                                                         "reloaded_from": str(path)}}
        else:
            run = train_judge(seed=seed)
            save_checkpoint(run["model"], path)
            model, data = run["model"], run["data"]
            record = {"metrics": run["metrics"], "history": run["history"].as_dict()}
        if args.dvae:
            from minivl.checkpoint import checkpoint_metadata
            from minivl.recipes.dvae import default_path as dvae_path
            from minivl.recipes.dvae import load_dvae, reconstruct

            where = Path(args.dvae_path.replace("{seed}", str(seed))) if args.dvae_path else dvae_path(seed)
            if not where.exists():
                raise SystemExit(f"no dVAE for seed {seed} at {where}: run "
                                 f"python -m minivl.recipes.dvae --seeds {seed} --cache (or --save) first")
            dvae = load_dvae(where)
            record["metrics"].update(run_eval(model, partial(evaluate, model, data, dvae)))
            meta = checkpoint_metadata(where)
            record["metrics"]["dvae"] = {"seed": seed, "path": str(where), "steps": meta.get("steps"),
                                         "grid": list(dvae.grid), "vocab_size": dvae.K,
                                         "images_per_set": len(data["test"][0]),
                                         "load_average": os.getloadavg()[0]}
            images, scenes = data["test"]
            recon = reconstruct(dvae, images).astype(np.float32)
            record["metrics"]["test_recon_confusion"] = confusion(model, recon, scenes)
            misread_figure(model, images, recon, scenes).savefig(
                out.parent / f"{out.stem}_misread_seed{seed}.png", dpi=80)
        record["written"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        runs[str(seed)] = record
        print(json.dumps(record["metrics"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m minivl.recipes.judge " + " ".join(argv if argv is not None else [])
    before = json.loads(out.read_text())["runs"] if out.exists() else {}  # seeds run in parallel
    out.write_text(json.dumps({"command": command, "world": WORLD, "runs": {**before, **runs}}, indent=1))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
