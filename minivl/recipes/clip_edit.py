"""A CLIP-guided edit: move a generator's input until CLIP finds the picture
close to a prompt (lecture S18; StyleCLIP's latent optimisation, Patashnik et
al. 2021).

StyleCLIP starts from ``w_s``, the latent of a real image, and minimises over
``w``

    D_CLIP(G(w), t) + lambda * ||w - w_s||^2

where ``D_CLIP`` is the cosine distance between CLIP's embeddings of the
generated image and of the prompt ``t``, and the second term keeps the edit
close to the start (the paper adds an identity loss for faces; nothing here
has an identity). ``optimise`` is that loop, written once; two generators
plug into it:

* **digits** (``digits_parts``, ``edit_digits``): the S20 VAE's decoder from
  its 2-D latent; ``w_s`` is the posterior mean of a test digit; the prompt
  names another digit; a CLIP trained on the digits at 16 px reads the
  decoded 8 x 8 digit (bilinearly upscaled inside the graph,
  ``minivl.data.digits.resize_matrix``); closeness: ``||w - w_s||^2``;
* **shapes** (``shapes_parts``, ``edit_shapes``): the DALL-E dVAE's decoder
  (``minivl.recipes.dvae``); ``w`` is its code logits ``(B, K, h, w)``,
  decoded from their softmax (the relaxed codes it was trained on), the edited
  image from their argmax codes; the prompt recolours one object; the CLIP is
  DALL-E's reranker; closeness: ``KL(q_s || q)`` summed over the grid (logits
  have no natural scale for an L2 term).

The verdict comes from a judge that neither the generator nor the CLIP saw:
an MLP trained on real digits; the DALL-E judge (``minivl.recipes.judge``) on
shapes, cell by cell. The edit *happened* when the judge reads the prompt's
digit or colour where the start had another. Two baselines: the start itself
(what the judge reads before any step), and **text only**, the same prompt
and steps from the prior's centre (``w = 0``; uniform codes) instead of the
image's latent, which shows what the prompt makes with no image to keep.

    python -m minivl.recipes.clip_edit --out results/clip_edit.json --seeds 0 1
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from minivl import functional as F
from minivl import nn
from minivl.models.vision import DEFAULT_MEAN, DEFAULT_STD
from minivl.nn.module import Parameter
from minivl.optim import Adam
from minivl.random import manual_seed
from minivl.tensor import Tensor, no_grad
from minivl.train import train

DIGITS = dict(steps=200, lr=0.1, lams=(0.0, 0.1, 1.0), vae_steps=None, clip_steps=None,
              judge_steps=600)
SHAPES = dict(steps=100, lr=0.5, lams=(0.0, 0.003, 0.01, 0.1), n_edits=64)
# The shapes edits steer with DALL-E's reranker CLIP as it was when results/clip_edit.json was
# written: 500 steps (DALL-E's reranker now trains longer, minivl/recipes/dalle.py::RERANKER).
RERANKER_STEPS = dict(steps=500)


# --------------------------------------------------------------------------- the loop


def optimise(w0, embed, text, keep, lam, steps, lr, progress=False, desc="clip edit") -> dict:
    """Adam on ``-cos(embed(w), text) + lam * keep(w, w0)``, each row its own problem.

    ``w0`` ``(B, ...)`` float32: the start; ``embed(w)`` -> unit CLIP image
    embeddings ``(B, E)`` (a Tensor with a path back to ``w``); ``text``
    ``(B, E)`` unit prompt embeddings; ``keep(w, w0)`` -> ``(B,)`` closeness
    penalties. Returns ``{"w": final latents, "cosine": (steps,) mean cosine
    before each step, "final_cosine": (B,)}``. The models inside ``embed`` are
    only read: freeze them (``requires_grad_(False)``) so no gradient is spent
    on them.
    """
    w0 = np.asarray(w0, np.float32)
    text = np.asarray(text, np.float32)
    if text.ndim != 2 or text.shape[0] != w0.shape[0]:
        raise ValueError(f"text must be (B, E) with B = {w0.shape[0]} rows of w0, got shape {text.shape}")
    w = Parameter(w0.copy())
    optimizer = Adam([w], lr=lr)
    target, start = Tensor(text), Tensor(w0)
    cosine = []
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        sim = (embed(w) * target).sum(axis=-1)  # (B,)
        loss = (lam * keep(w, start) - sim).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        cosine.append(float(sim.numpy().mean()))
    with no_grad():
        final = (embed(w) * target).sum(axis=-1).numpy()
    return {"w": w.numpy().copy(), "cosine": np.array(cosine), "final_cosine": final}


def squared_distance(w, w0) -> Tensor:
    """``||w - w0||^2`` per row: StyleCLIP's L2 term."""
    d = w - w0
    return (d * d).reshape(d.shape[0], -1).sum(axis=-1)


def code_kl(logits, logits0) -> Tensor:
    """``KL(q0 || q)`` summed over the grid, per image: q = softmax over the K codes
    (axis 1) of ``(B, K, h, w)`` logits. Zero at the start; large where a cell
    leaves the codes it was sure of, small where it was torn between several."""
    logq0 = F.log_softmax(logits0, axis=1)
    kl = F.exp(logq0) * (logq0 - F.log_softmax(logits, axis=1))  # (B, K, h, w)
    return kl.reshape(kl.shape[0], -1).sum(axis=-1)


def clip_pixels(p) -> Tensor:
    """Pixels in [0, 1] -> the CLIP towers' input scale, as ``preprocess`` maps them."""
    return (p - DEFAULT_MEAN) * (1.0 / DEFAULT_STD)


# --------------------------------------------------------------------------- digits: the VAE


def train_digit_judge(seed=0, steps=600, hidden=128, lr=3e-3, batch_size=64) -> tuple[nn.MLP, float]:
    """An MLP on the raw 64 pixels of the training digits: ``(judge, test accuracy)``."""
    from minivl.recipes.vae import digits

    manual_seed(seed)
    x, y = digits("train", seed)
    judge = nn.MLP(x.shape[1], hidden, 10, activation="relu")
    rng = np.random.default_rng(seed)

    def draws():  # random batches, forever
        while True:
            b = rng.integers(0, len(x), batch_size)
            yield x[b], y[b]

    train(judge, lambda m, batch: F.cross_entropy(m(Tensor(batch[0])), batch[1]), draws(),
          Adam(judge.parameters(), lr=lr), steps, clip_norm=None, progress=False, desc="digit judge")
    judge.eval().requires_grad_(False)
    xt, yt = digits("test", seed)
    return judge, float(np.mean(read_digits(judge, xt) == yt))


def read_digits(judge, pixels) -> np.ndarray:
    """The judge's digit for each row of ``pixels (B, 64)`` in [0, 1]."""
    with no_grad():
        return judge(Tensor(np.asarray(pixels, np.float32))).numpy().argmax(axis=1)


def digits_parts(seed=0, vae_steps=None, clip_steps=None, judge_steps=600, progress=True) -> dict:
    """The VAE, a digits CLIP with its zero-shot prompts, and the judge, all trained here
    (about a minute on two cores); the VAE and CLIP frozen."""
    from minivl.data.clip_pairs import DIGIT_TRAIN_TEMPLATES
    from minivl.data.digits import DIGIT_NAMES
    from minivl.recipes.clip import train_clip
    from minivl.recipes.vae import train_vae

    vae = train_vae(steps=vae_steps, seed=seed, progress=progress)["model"].eval().requires_grad_(False)
    run = train_clip("digits", steps=clip_steps, seed=seed, progress=progress)
    clip = run["model"].eval().requires_grad_(False)
    prompts = clip.zero_shot_classifier(DIGIT_NAMES, DIGIT_TRAIN_TEMPLATES, run["tokenizer"])  # (10, E)
    judge, judge_accuracy = train_digit_judge(seed, judge_steps)
    return {"vae": vae, "clip": clip, "prompts": prompts, "judge": judge,
            "judge_accuracy": judge_accuracy, "clip_top1": run["metrics"]["text_label_top1"]}


def digit_embedder(vae, clip):
    """``w (B, Z)`` -> CLIP embeddings of the decoded digits, differentiable in ``w``."""
    from minivl.data.digits import resize_matrix

    side = int(round(np.sqrt(vae.config.input_dim)))
    size = clip.config.image_size
    R = Tensor(resize_matrix(side, size))  # (size, side): bilinear, as the CLIP's training digits
    RT = Tensor(resize_matrix(side, size).T.copy())

    def embed(w):
        p = F.sigmoid(vae.decode(w)).reshape(-1, side, side)  # (B, 8, 8) in [0, 1]
        big = F.matmul(F.matmul(R, p), RT)  # (B, size, size)
        return clip.encode_image(clip_pixels(big).reshape(-1, 1, size, size))
    return embed


def edit_digits(parts, x, labels, targets, lam, steps=200, lr=0.1, from_prior=False, progress=False) -> dict:
    """Edit test digits ``x (B, 64)`` towards the prompt of ``targets (B,)``.

    Returns the run of ``optimise`` plus ``start`` (the decoded start,
    ``(B, 64)``), ``edited``, and the judge's verdicts: ``happened`` (reads the
    target), ``kept_label`` (still reads its own label: the control whose
    target is its own label), ``pixel_rms`` (root mean square change from the
    start's reconstruction)."""
    vae, judge = parts["vae"], parts["judge"]
    with no_grad():
        mu, _ = vae.encode(x)
    w_image = mu.numpy()  # (B, Z): the posterior means
    w0 = np.zeros_like(w_image) if from_prior else w_image
    run = optimise(w0, digit_embedder(vae, parts["clip"]), parts["prompts"][targets], squared_distance,
                   lam, steps, lr, progress, desc="edit digits")
    start, edited = vae.generate(w_image), vae.generate(run["w"])
    read = read_digits(judge, edited)
    return {**run, "w_start": w_image, "start": start, "edited": edited, "read": read,
            "happened": float(np.mean(read == targets)), "kept_label": float(np.mean(read == labels)),
            "pixel_rms": float(np.sqrt(np.mean((edited - start) ** 2))),
            "latent_distance": float(np.linalg.norm(run["w"] - w_image, axis=1).mean())}


def digits_study(seed=0, steps=None, lr=None, lams=None, n=None, progress=True, parts=None, **train) -> dict:
    """Every test digit edited towards another digit drawn at random, for each lambda;
    the start, the text-only row and the own-label control beside them."""
    from minivl.recipes.vae import digits

    o = {**DIGITS, **{k: v for k, v in dict(steps=steps, lr=lr, lams=lams).items() if v is not None}}
    parts = parts or digits_parts(seed, progress=progress, **{k: train.get(k, DIGITS[k]) for k in
                                                              ("vae_steps", "clip_steps", "judge_steps")})
    x, y = digits("test", seed)
    x, y = x[:n], y[:n]
    rng = np.random.default_rng([seed, 18])
    targets = (y + rng.integers(1, 10, len(y))) % 10  # another digit, uniformly
    start_read = read_digits(parts["judge"], parts["vae"].reconstruct(x))
    rows = {"start (no edit)": {"happened": float(np.mean(start_read == targets)),
                                "kept_label": float(np.mean(start_read == y)), "pixel_rms": 0.0}}
    kept = ("happened", "kept_label", "pixel_rms", "latent_distance")
    runs = {}
    for lam in o["lams"]:
        runs[lam] = edit_digits(parts, x, y, targets, lam, o["steps"], o["lr"], progress=progress)
        rows[f"edit, lambda {lam:g}"] = {k: runs[lam][k] for k in kept} | {
            "final_cosine": float(runs[lam]["final_cosine"].mean())}
    lam = o["lams"][len(o["lams"]) // 2]
    blind = edit_digits(parts, x, y, targets, lam, o["steps"], o["lr"], from_prior=True, progress=progress)
    rows[f"text only (from z = 0), lambda {lam:g}"] = {k: blind[k] for k in kept}
    own = edit_digits(parts, x, y, y, lam, o["steps"], o["lr"], progress=progress)
    rows[f"control: prompt names its own digit, lambda {lam:g}"] = {k: own[k] for k in kept}
    return {"rows": rows, "settings": {**o, "lams": list(o["lams"]), "n_test": len(y), "seed": seed},
            "judge_test_accuracy": parts["judge_accuracy"], "clip_text_label_top1": parts["clip_top1"],
            "judge_on_vae_reconstructions": float(np.mean(start_read == y)),
            "_runs": runs, "_targets": targets, "_labels": y, "_parts": parts}


# --------------------------------------------------------------------------- shapes: the dVAE


def shapes_parts(seed=0, progress=True) -> dict:
    """The cached default dVAE, DALL-E's CLIP reranker and the judge of ``seed``, frozen."""
    from minivl.recipes.dalle import default_reranker
    from minivl.recipes.dvae import default_dvae
    from minivl.recipes.judge import default_judge

    dvae = default_dvae(seed, progress).eval().requires_grad_(False)
    clip, tokenizer = default_reranker(seed, progress, **RERANKER_STEPS)
    return {"dvae": dvae, "clip": clip.eval().requires_grad_(False), "tokenizer": tokenizer,
            "judge": default_judge(seed, progress)}


def recolour_edits(pairs, n, seed=0) -> dict:
    """Up to ``n`` edits of ``pairs`` (``minivl.data.dalle_pairs.Pairs``): object 0 of a scene
    takes a colour no object of the scene has; the prompt is a "list" caption of the edited
    scene. Returns lists ``{"index", "scenes", "targets", "prompts", "captions"}`` (the
    prompts as text and as ``Caption``)."""
    from minivl.data.captions import sample_caption
    from minivl.data.shapes import COLOURS

    rng = np.random.default_rng([seed, 18])
    out = {"index": [], "scenes": [], "targets": [], "prompts": [], "captions": []}
    for i, scene in enumerate(pairs.scenes):
        if len(out["index"]) == n:
            break
        taken = {o.colour for o in scene.objects}
        obj = scene.objects[0]
        new = dataclasses.replace(obj, colour=int(rng.choice([c for c in range(len(COLOURS)) if c not in taken])))
        target = dataclasses.replace(scene, objects=(new,) + scene.objects[1:])
        out["index"].append(i)
        out["scenes"].append(scene)
        out["targets"].append(target)
        caption = sample_caption(target, rng, ("list",))
        out["captions"].append(caption)
        out["prompts"].append(caption.text)
    return out


def code_embedder(dvae, clip):
    """Code logits ``(B, K, h, w)`` -> CLIP embeddings of the decoded softmax mixture."""
    from minivl.models.dvae import EPS

    C = dvae.config.in_channels

    def embed(logits):
        mu = dvae.decode(F.softmax(logits, axis=1))[:, :C]  # (B, C, S, S)
        p = F.sigmoid(mu)
        if dvae.config.likelihood == "logit_laplace":
            p = (p - EPS) * (1.0 / (1 - 2 * EPS))  # unmap_pixels, without the clip
        return clip.encode_image(clip_pixels(p))
    return embed


def judge_edits(judge, images, start_images, edits) -> dict:
    """Per edit: ``happened`` (the edited object's cell reads the new colour),
    ``kept`` (every other cell reads as in ``start_images``), ``exact`` (the
    whole reading is the edited scene)."""
    from minivl.models.judge import cell_index

    shapes, colours, _ = judge.predict(images)
    s0, c0, _ = judge.predict(start_images)
    happened, kept = [], []
    for i, target in enumerate(edits["targets"]):
        k = cell_index(target.objects[0], judge.config.grid, judge.cell)
        happened.append(shapes[i, k] != 0 and colours[i, k] == target.objects[0].colour)
        others = np.arange(shapes.shape[1]) != k
        kept.append(bool((shapes[i, others] == s0[i, others]).all() and (colours[i, others] == c0[i, others]).all()))
    exact = judge.matches(images, edits["targets"])
    return {"happened": float(np.mean(happened)), "kept": float(np.mean(kept)), "exact": float(np.mean(exact))}


def encode_edits(parts, images, prompts) -> tuple[np.ndarray, np.ndarray]:
    """The dVAE's code logits ``(B, K, h, w)`` of uint8 renders ``(B, S, S, 3)`` and the
    CLIP embeddings ``(B, E)`` of their prompts: what every edit of a study starts from."""
    from minivl.models.dvae import pixels

    dvae, clip, tokenizer = parts["dvae"], parts["clip"], parts["tokenizer"]
    with no_grad():
        ids, mask = tokenizer(list(prompts))
        return dvae.encode(pixels(images)).numpy(), clip.encode_text(ids, mask).numpy()


def edit_shapes(parts, logits, text, lam, steps=100, lr=0.5, from_prior=False, progress=False) -> dict:
    """Edit code logits ``(B, K, h, w)`` towards the prompt embeddings ``text (B, E)``
    (``encode_edits``); ``edited`` are the argmax codes' pictures ``(B, 3, S, S)`` in [0, 1]."""
    dvae = parts["dvae"]
    w0 = np.zeros_like(logits) if from_prior else logits
    run = optimise(w0, code_embedder(dvae, parts["clip"]), text, code_kl, lam, steps, lr, progress,
                   desc="edit shapes")
    return {**run, "edited": dvae.decode_codes(run["w"].argmax(axis=1))}


def shapes_study(seed=0, steps=None, lr=None, lams=None, n_edits=None, progress=True, parts=None) -> dict:
    """Recolour ``n_edits`` held-out scenes of the DALL-E data, for each lambda, with the
    start and the text-only row beside them."""
    from minivl.data.dalle_pairs import make_dalle_data

    o = {**SHAPES, **{k: v for k, v in dict(steps=steps, lr=lr, lams=lams, n_edits=n_edits).items()
                      if v is not None}}
    parts = parts or shapes_parts(seed, progress)
    pairs = make_dalle_data(n_train=1, seed=seed, n_eval=max(200, o["n_edits"]))[1]["held_out_scenes"]
    edits = recolour_edits(pairs, o["n_edits"], seed)
    images = pairs.images[edits["index"]]
    judge = parts["judge"]
    logits, text = encode_edits(parts, images, edits["prompts"])
    start = parts["dvae"].decode_codes(logits.argmax(axis=1))  # what the argmax codes draw
    rows = {"start (no edit)": judge_edits(judge, start, start, edits)}
    runs = {}
    for lam in o["lams"]:
        runs[lam] = edit_shapes(parts, logits, text, lam, o["steps"], o["lr"], progress=progress)
        rows[f"edit, lambda {lam:g}"] = judge_edits(judge, runs[lam]["edited"], start, edits) | {
            "final_cosine": float(runs[lam]["final_cosine"].mean())}
    lam = o["lams"][len(o["lams"]) // 2]
    blind = edit_shapes(parts, logits, text, lam, o["steps"], o["lr"], from_prior=True, progress=progress)
    rows[f"text only (from uniform codes), lambda {lam:g}"] = judge_edits(judge, blind["edited"], start, edits)
    original_read = judge.matches(start, edits["scenes"])
    return {"rows": rows, "settings": {**o, "lams": list(o["lams"]), "seed": seed},
            "judge_reads_start_reconstruction_exactly": float(np.mean(original_read)),
            "objects_per_scene": float(np.mean([len(s) for s in edits["scenes"]])),
            "dvae": {"config": dataclasses.asdict(parts["dvae"].config), "grid": list(parts["dvae"].grid),
                     "default_path": _default_dvae_name(seed)},
            "_runs": runs, "_edits": edits, "_images": images, "_start": start}


# --------------------------------------------------------------------------- figures and main


def digits_figure(study, lam=None, n=12):
    """Left: test digits' latent means by label, arrows from start to edit (``n`` of
    them); right: starts (top) and edits (bottom), titled start -> target (judge)."""
    from matplotlib.figure import Figure

    lam = study["settings"]["lams"][len(study["settings"]["lams"]) // 2] if lam is None else lam
    run, y, t = study["_runs"][lam], study["_labels"], study["_targets"]
    fig = Figure(figsize=(14, 5))
    left = fig.add_gridspec(1, 2, width_ratios=(1, 1.6))
    ax = fig.add_subplot(left[0])
    points = ax.scatter(run["w_start"][:, 0], run["w_start"][:, 1], c=y, cmap="tab10", s=6, alpha=0.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    for i in range(n):
        a, b = run["w_start"][i], run["w"][i]
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", lw=1.0))
    ax.set(title=f"edits in the latent plane (lambda {lam:g})", xlabel="z1", ylabel="z2")
    right = left[1].subgridspec(2, n)
    for i in range(n):
        for row, img in enumerate((run["start"][i], run["edited"][i])):
            a = fig.add_subplot(right[row, i])
            a.imshow(img.reshape(8, 8), cmap="gray", vmin=0, vmax=1)
            a.set_xticks([]), a.set_yticks([])
            if row == 0:
                a.set_title(f"{y[i]}->{t[i]}", fontsize=8)
            else:
                a.set_title(f"read {run['read'][i]}", fontsize=8)
    return fig


def shapes_figure(study, lam=None, n=8):
    """Rows: originals, their reconstructions (the start), the edits; under each edit the
    change its prompt asks for (the prompt itself names every object)."""
    from minivl.models.dvae import to_uint8
    from minivl.viz.images import image_grid

    lam = study["settings"]["lams"][len(study["settings"]["lams"]) // 2] if lam is None else lam
    run, edits = study["_runs"][lam], study["_edits"]
    panels = np.concatenate([study["_images"][:n], to_uint8(study["_start"][:n]), to_uint8(run["edited"][:n])])
    from minivl.data.shapes import COLOURS, SHAPES

    captions = [""] * (2 * n) + [
        f"{COLOURS[a.objects[0].colour]} -> {COLOURS[b.objects[0].colour]} {SHAPES[b.objects[0].shape]}"
        for a, b in zip(edits["scenes"][:n], edits["targets"][:n])]
    return image_grid(panels, captions=captions, ncols=n, panel_size=1.4)


def _default_dvae_name(seed) -> str:
    from minivl.recipes.dvae import default_path

    return default_path(seed).name


def _strip(study) -> dict:
    return {k: v for k, v in study.items() if not k.startswith("_")}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/clip_edit.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parts", nargs="+", choices=("digits", "shapes"), default=["digits", "shapes"])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a run of some parts or seeds keeps what the file already holds for the others
    old = json.loads(out.read_text()) if out.exists() else {}
    runs = old.get("runs", {})
    for seed in args.seeds:
        runs.setdefault(str(seed), {})
        for part, study_fn, figure in (("digits", digits_study, digits_figure),
                                       ("shapes", shapes_study, shapes_figure)):
            if part not in args.parts:
                continue
            began = time.perf_counter()
            study = study_fn(seed=seed, progress=not args.no_progress)
            figure(study).savefig(out.parent / f"clip_edit_{part}_seed{seed}.png", dpi=100)
            runs[str(seed)][part] = {**_strip(study), "seconds": time.perf_counter() - began,
                                     "load_average": os.getloadavg()[0]}
            print(part, seed, json.dumps(runs[str(seed)][part]["rows"], indent=1))
    command = ("python -m minivl.recipes.clip_edit " + " ".join(argv if argv is not None else [])).strip()
    commands = [c for c in old.get("commands", [old["command"]] if "command" in old else []) if c != command]
    out.write_text(json.dumps({"command": command, "commands": commands + [command],
                               "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "runs": runs}, indent=1))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
