"""``minivl clip train``: contrastive image-text pretraining on the shapes world
or the digits (lecture S12-S17), then zero-shot classification and retrieval.

``train_clip`` is the recipe the command, the notebook and ``minivl tour``
share:

* data, shapes: single-object scenes captioned with prompt-like sentences
  ("a photo of a red circle.", sometimes only "a photo of a circle." over a
  grey image, or "a photo of a red shape.") plus multi-object scenes
  captioned by listing their objects ("a small blue square and a green
  ring."), all from the *train* split, so the held-out (colour, shape) pairs
  are never seen. Objects sit in a 3 x 3 grid of 16-pixel cells of a 48 x 48
  image, one ViT patch per cell (``layout="grid"``; ``"free"`` places them
  anywhere in 32 x 32 images). Every multi-object scene comes with a *twin*
  that differs in one word of its caption, drawn into the same batch: a hard
  negative;
  digits: the scikit-learn digits, captioned "a photo of the digit seven." etc.;
* a ``CLIPTokenizer`` (byte-level BPE) learned on the training captions;
* AdamW with warm-up + cosine, weight decay on matrices only, the temperature
  clipped to <= log(100) after each step; optionally gradient caching
  (``chunk_size``) for batches larger than memory allows;
* evaluation (shapes): zero-shot top-1 on images of held-out pairs against all
  36 class prompts, and recall@1/5/10 on 1,000 multi-object scenes with
  distinct captions; (digits) zero-shot top-1 on the test split.

Checkpoints hold the model, the optimizer, the scheduler and the step
(``minivl.io.save``), so ``--resume`` continues a run exactly where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from minivl.commands._options import add_training_options
from minivl.data import (
    CLASS_NAMES,
    CLIP_TEMPLATES,
    COLOURS,
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    SHAPES,
    Scene,
    ShapesWorld,
    load_digits,
    resize,
)
from minivl.data.captions import Caption
from minivl.data.language import describe
from minivl.distributed import data_parallel_for, distributed_info_nce, is_main
from minivl.io import load, load_metadata, save
from minivl.losses import info_nce
from minivl.models.clip import (
    CLIP,
    CLIPConfig,
    CLIPTokenizer,
    embed_images,
    embed_texts,
    retrieval_recall,
    top_k_accuracy,
)
from minivl.models.gradcache import grad_cache_loss
from minivl.models.vision import preprocess
from minivl.optim import AdamW, WarmupCosineLR, flatten_state_dict, unflatten_state_dict
from minivl.random import manual_seed
from minivl.tokenizers import BPETokenizer
from minivl.train import History, run_eval, train

TASKS = ("shapes", "digits")
LAYOUTS = ("grid", "free")  # where shapes-world objects sit: in a 3 x 3 grid of cells, or anywhere
GRID = 3


# --------------------------------------------------------------------------- data


def prompt_captions(scenes, rng, templates=CLIP_TEMPLATES, partial=0.0):
    """"a photo of a red circle." for single-object scenes, a random template each.

    A fraction ``partial`` of the captions name only the colour ("a photo of a
    red shape.") or only the shape ("a photo of a circle."), as web captions
    vary in detail; it teaches the two attributes apart, which is what lets a
    never-seen pair be recognised. Returns the captions and a boolean array
    marking the shape-only ones.
    """
    captions, shape_only = [], np.zeros(len(scenes), dtype=bool)
    for k, scene in enumerate(scenes):
        colour, shape = CLASS_NAMES[scene.objects[0].class_id].split()
        name = f"{colour} {shape}"
        if rng.random() < partial:
            shape_only[k] = rng.random() < 0.5
            name = shape if shape_only[k] else f"{colour} shape"
        captions.append(templates[int(rng.integers(len(templates)))].format(name))
    return captions, shape_only


def to_grey(images):
    """RGB uint8 ``(N, S, S, 3)`` -> its luminance, still ``(N, S, S, 3)`` (ITU-R 601 weights)."""
    luminance = images @ np.array([0.299, 0.587, 0.114])  # (N, S, S)
    return np.repeat(np.round(luminance).astype(np.uint8)[..., None], 3, axis=-1)


def canonical_caption(scene) -> str:
    """Every object as "colour shape", in class order: equal captions mean equal contents."""
    objects = sorted(scene.objects, key=lambda o: o.class_id)
    return Caption("list", tuple(describe(o, ("colour", "shape")) for o in objects)).text


def distinct_caption_set(world, n, rng, max_objects=3):
    """``n`` multi-object scenes whose canonical captions are all different."""
    scenes, captions, seen = [], [], set()
    while len(scenes) < n:
        for scene in world.scenes(2 * n, split="train", rng=rng):
            caption = canonical_caption(scene)
            if caption not in seen and len(scene) <= max_objects:
                seen.add(caption)
                scenes.append(scene)
                captions.append(caption)
                if len(scenes) == n:
                    break
    return scenes, captions


def twin_scene(scene, rng, held_out_ids):
    """The scene with one change that its caption would notice, or None if none is allowed.

    Either one object gets another colour or shape, or two objects swap
    colours, which keeps the bag of words and changes only who is what colour.
    A swap must change what the caption says, so the two objects differ in
    colour and in shape or size (two big squares, red and cyan, swapped, are
    the same scene described twice: a false negative). Held-out pairs stay out.
    """
    objects = list(scene.objects)

    def swappable(a, b):
        return a.colour != b.colour and (a.shape, a.size) != (b.shape, b.size)

    kinds = ["colour", "shape"] + (["swap"] if len(objects) > 1 else [])
    for _ in range(20):
        kind = kinds[int(rng.integers(len(kinds)))]
        new = list(objects)
        if kind == "swap":
            i, j = rng.choice(len(objects), 2, replace=False)
            if not swappable(objects[i], objects[j]):
                continue
            new[i] = replace(objects[i], colour=objects[j].colour)
            new[j] = replace(objects[j], colour=objects[i].colour)
        else:
            i = int(rng.integers(len(objects)))
            count = len(COLOURS) if kind == "colour" else len(SHAPES)
            value = (getattr(objects[i], kind) + 1 + int(rng.integers(count - 1))) % count
            new[i] = replace(objects[i], **{kind: value})
        if all(o.class_id not in held_out_ids for o in new):
            return Scene(scene.image_size, tuple(new))
    return None


def one_object_scenes(world, n, split, rng):
    """Single-object scenes: one object in a random cell on a grid world, else one big centred one."""
    if world.grid:
        return world.scenes(n, split=split, rng=rng, objects=1)
    return world.single_object_scenes(n, split=split, rng=rng)


def shapes_pairs(world, n_single, n_multi, rng, partial=0.0, twins=False, grey=0.0):
    """Training pairs: uint8 images ``(N, S, S, 3)`` and one caption each.

    ``grey``: the fraction of the shape-only single-object pairs whose image is
    turned to grey (random-grayscale augmentation): the caption does not name
    a colour, and the image then shows none, so the shape must be recognised
    from its outline alone, whatever the colour. No held-out pair is shown.

    With ``twins`` every multi-object scene is followed by its ``twin_scene``
    (rows 2k and 2k + 1), and ``batches(..., groups=2)`` keeps the two in one
    batch: each pair then meets a negative that differs from it in one word,
    the kind of hard negative a batch of 32,768 holds by chance (S14).
    """
    single = one_object_scenes(world, n_single, "train", rng) if n_single else []
    multi = world.scenes(n_multi // 2 if twins else n_multi, split="train", rng=rng) if n_multi else []
    if twins:
        paired = []
        for scene in multi:
            twin = twin_scene(scene, rng, world.held_out_class_ids)
            paired += [scene, twin if twin is not None else world.scenes(1, "train", rng)[0]]
        multi = paired
    single_captions, shape_only = prompt_captions(single, rng, partial=partial)
    captions = single_captions + world.captions(multi, rng=rng, kinds=("list",))
    images = world.render(single + multi)
    turn = np.flatnonzero(shape_only & (rng.random(len(single)) < grey))
    images[turn] = to_grey(images[turn])
    return images, captions


def digit_images(split, size, seed=0):
    """Digits as uint8 ``(N, size, size)`` and labels; upscaled (bilinear) from 8 x 8."""
    d = load_digits(split, seed=seed)
    images = d.images if size == 8 else np.round(resize(d.images, size, "bilinear")).astype(np.uint8)
    return images, d.labels


def make_data(task, n_train, image_size, seed, n_zero_shot=600, n_retrieval=1000,
              multi_fraction=0.5, partial=0.0, twins=False, grey=0.0, grid=None):
    """Training pairs and the evaluation sets of ``task`` (all seeded).

    Shapes: ``multi_fraction`` of the pairs are multi-object scenes, the rest
    single objects (``partial``: see ``prompt_captions``).
    """
    rng = np.random.default_rng(seed)
    if task == "shapes":
        world = ShapesWorld(image_size=image_size, max_objects=3, seed=seed, grid=grid)
        n_multi = 2 * int(round(n_train * multi_fraction / 2))  # even: twins come in pairs
        images, captions = shapes_pairs(world, n_train - n_multi, n_multi, rng, partial, twins,
                                        grey)
        test_rng = np.random.default_rng([seed, 1])  # independent of how much was trained on
        held_out = one_object_scenes(world, n_zero_shot, "test", test_rng)
        seen = one_object_scenes(world, n_zero_shot, "train", test_rng)
        scenes, texts = distinct_caption_set(world, n_retrieval, test_rng)
        evals = {
            "held_out": (world.render(held_out), np.array([s.class_ids[0] for s in held_out])),
            "seen": (world.render(seen), np.array([s.class_ids[0] for s in seen])),
            "retrieval": (world.render(scenes), texts),
            "held_out_ids": sorted(world.held_out_class_ids),
        }
        return images, captions, evals
    images, labels = digit_images("train", image_size, seed)
    captions = [DIGIT_TEMPLATES[int(rng.integers(len(DIGIT_TEMPLATES)))].format(DIGIT_NAMES[y])
                for y in labels]
    return images, captions, {"test": digit_images("test", image_size, seed)}


def evaluate(model, tokenizer, task, evals, templates=None) -> dict:
    """Zero-shot top-1 (and retrieval recall for shapes) on the evaluation sets."""
    if task == "digits":
        classifier = model.zero_shot_classifier(DIGIT_NAMES, templates or DIGIT_TEMPLATES, tokenizer)
        images, labels = evals["test"]
        return {"zero_shot_top1": top_k_accuracy(model.predict(images, classifier), labels)["top1"]}
    classifier = model.zero_shot_classifier(CLASS_NAMES, templates or CLIP_TEMPLATES, tokenizer)
    images, labels = evals["held_out"]
    probs = model.predict(images, classifier)  # (B, 36): every class competes
    held = evals["held_out_ids"]
    among_held = np.asarray(held)[probs[:, held].argmax(axis=1)]
    seen_images, seen_labels = evals["seen"]
    out = {
        "held_out_top1": top_k_accuracy(probs, labels)["top1"],
        "held_out_top1_among_held_out": float(np.mean(among_held == labels)),
        "seen_top1": top_k_accuracy(model.predict(seen_images, classifier), seen_labels)["top1"],
    }
    r_images, r_texts = evals["retrieval"]
    ids, mask = tokenizer(r_texts)
    recall = retrieval_recall(embed_images(model, r_images), embed_texts(model, ids, mask))
    return {**out, **recall}


# --------------------------------------------------------------------------- training


def batches(images, ids, mask, batch_size, seed, start=0, groups=1):
    """Random batches forever; batch ``s`` depends only on ``(seed, s)``, so a resumed
    run sees exactly the batches the uninterrupted run would have.

    ``groups``: rows come in consecutive groups of this size that are drawn
    together (the twins of ``shapes_pairs``).
    """
    step = start
    offsets = np.arange(groups)
    while True:
        step += 1
        first = np.random.default_rng([seed, step]).choice(len(ids) // groups, batch_size // groups,
                                                           replace=False)
        pick = (groups * first[:, None] + offsets).ravel()  # (B,)
        yield preprocess(images[pick]), ids[pick], mask[pick]  # uint8 -> (B, C, S, S)


def contrastive_loss(model, batch, chunk_size=None):
    """The S15 loss of one batch; with ``chunk_size``, through the gradient cache."""
    images, ids, mask = batch
    if not chunk_size or chunk_size >= len(ids):
        return model.loss(images, ids, mask)
    return grad_cache_loss(lambda i, t: info_nce(i, t, model.logit_scale),
                           [(model.encode_image, (images,)), (model.encode_text, (ids, mask))],
                           chunk_size)


def make_optimizer(model, lr, weight_decay, steps, warmup):
    """AdamW (decay on matrices only, not on gains, biases or the temperature) + schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)  # CLIP's betas and eps
    return optimizer, WarmupCosineLR(optimizer, steps, min(warmup, steps - 1), min_lr=lr / 20)


def save_run(path, model, tokenizer, optimizer, scheduler, step, task):
    """One file: model weights, optimizer and scheduler state, step; tokenizer beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"optimizer.{k}": v for k, v in flatten_state_dict(optimizer.state_dict()).items()})
    state["scheduler.last_step"] = np.array(scheduler.last_step)
    state["step"] = np.array(step)
    meta = {"model": "CLIP", "task": task, "config": json.dumps(asdict(model.config))}
    save(state, path, metadata=meta)
    tokenizer.bpe.save(path.with_name(path.stem + ".tokenizer.json"))


def load_run(path):
    """``(model, tokenizer, state)`` from a file written by ``save_run``."""
    path = Path(path)
    meta = load_metadata(path)
    if meta.get("model") != "CLIP":
        raise ValueError(f"{path} holds a {meta.get('model')!r} checkpoint, not a CLIP run")
    state = load(path)
    model = CLIP(CLIPConfig(**json.loads(meta["config"])))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    bpe = BPETokenizer.load(path.with_name(path.stem + ".tokenizer.json"))
    return model, CLIPTokenizer(bpe, model.config.context_length), {**state, "task": meta["task"]}


def train_clip(task="shapes", steps=None, batch_size=None, chunk_size=None, lr=2e-3, warmup=50,
               weight_decay=0.1, image_size=None, patch_size=None, dim=64, depth=2, heads=4,
               embed_dim=64, n_train=40000, vocab_size=320, eval_every=250, seed=0,
               progress=True, out=None, resume=None, stop_after=None, multi_fraction=0.5,
               partial_captions=0.5, twins=True, grey=1.0, n_zero_shot=600,
               n_retrieval=1000, layout="grid", distributed=False, local_loss=False) -> dict:
    """Train a CLIP on ``task`` ("shapes" or "digits") and evaluate it.

    Returns ``{"model", "tokenizer", "history", "scale", "metrics", "evals"}``:
    ``scale`` is exp(logit_scale) after every step, ``metrics`` the final
    evaluation plus timings, ``evals`` the evaluation data (for plots). With
    ``out`` the run is saved to ``out/clip.safetensors`` (every ``eval_every``
    steps and at the end); ``resume`` names such a file and continues from its
    step up to ``steps``. ``stop_after`` ends this session early, after that
    many steps in all, with the schedule still planned for ``steps``.

    Shapes data: ``n_train`` pairs, ``multi_fraction`` of them multi-object
    scenes, ``partial_captions`` of the single-object captions naming one
    attribute only, ``grey`` of the shape-only ones shown in grey, ``twins``
    (see ``shapes_pairs``). ``layout="grid"`` (the default) draws 48 x 48
    scenes whose objects sit in a 3 x 3 grid of cells, read by a ViT with one
    16 x 16 patch per cell; ``"free"`` places objects anywhere in 32 x 32
    images read in 8 x 8 patches, so objects are cut by the patch grid (see
    ``lectures/04-clip.md`` for what that costs). Digits use the whole train
    split. ``chunk_size`` turns on gradient caching.

    ``distributed``: data parallel over the ranks of ``mpirun``; the InfoNCE
    logits span the global batch (``minivl.distributed.distributed_info_nce``,
    ``local_loss`` for the n x N variant); rank 0 evaluates and saves, every
    rank resumes from the same file.
    """
    if distributed and chunk_size:
        raise ValueError("chunk_size (gradient caching) and distributed cannot be combined: "
                         "spread the batch over ranks instead")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    grid = GRID if task == "shapes" and layout == "grid" else None
    steps = steps or (3000 if task == "shapes" else 300)
    batch_size = batch_size or (128 if task == "shapes" else 64)
    began = time.perf_counter()
    manual_seed(seed)
    if task == "digits":
        image_size, patch_size = image_size or 16, patch_size or 4
    elif grid:  # one patch per grid cell: every object lies whole inside one patch
        image_size = image_size or 48
        patch_size = patch_size or image_size // grid
    else:
        image_size, patch_size = image_size or 32, patch_size or 8
    twins = twins and task == "shapes"
    images, captions, evals = make_data(task, 2 * (n_train // 2), image_size, seed, n_zero_shot,
                                        n_retrieval, multi_fraction, partial_captions, twins, grey,
                                        grid)
    start = 0
    if resume:
        model, tokenizer, state = load_run(resume)
        if state["task"] != task:
            raise ValueError(f"{resume} is a {state['task']!r} run, not {task!r}")
        trained = (model.config.image_size, model.config.patch_size)
        if trained != (image_size, patch_size):
            raise ValueError(
                f"{resume} was trained on {trained[0]} px images in {trained[1]} px patches, this "
                f"run draws {image_size} px images in {patch_size} px patches: resume with the "
                "same layout (and image and patch sizes)"
            )
        start = int(state["step"])
    else:
        tokenizer = CLIPTokenizer.train(captions, vocab_size, context_length=32)
        model = CLIP(embed_dim=embed_dim, image_size=image_size, patch_size=patch_size,
                     in_channels=3 if task == "shapes" else 1, vision_dim=dim, vision_depth=depth,
                     vision_heads=heads, vocab_size=tokenizer.vocab_size, context_length=32,
                     text_dim=dim, text_depth=depth, text_heads=heads)
    optimizer, scheduler = make_optimizer(model, lr, weight_decay, steps, warmup)
    if resume:
        optimizer.load_state_dict(unflatten_state_dict(
            {k[10:]: v for k, v in state.items() if k.startswith("optimizer.")}))
        scheduler.load_state_dict({"last_step": int(state["scheduler.last_step"])})
    data_seconds = time.perf_counter() - began

    ids, mask = tokenizer(captions)  # (N, L)
    scale = []

    def after_step(step):
        model.clamp_logit_scale_()
        scale.append(model.scale)
        if out and (start + step) % max(eval_every, 1) == 0 and is_main(dp):
            save_run(Path(out) / "clip.safetensors", model, tokenizer, optimizer, scheduler,
                     start + step, task)

    end = min(steps, stop_after or steps)
    history = History()
    dp = data_parallel_for(model, distributed, dict(task=task, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                                    start=start, local_loss=local_loss, layout=layout))
    if dp is not None:
        loss_fn = lambda m, b: distributed_info_nce(m.encode_image(b[0]), m.encode_text(b[1], b[2]),
                                                    m.logit_scale, dp.communicator, local_loss)
    else:
        loss_fn = lambda m, b: contrastive_loss(m, b, chunk_size)
    if end > start:
        history = train(model, loss_fn,
                        batches(images, ids, mask, batch_size, seed, start, 2 if twins else 1),
                        optimizer, end - start, scheduler, clip_norm=1.0,
                        evaluate=lambda: evaluate(model, tokenizer, task, evals),
                        eval_every=eval_every, progress=progress, desc=f"clip {task}",
                        on_step=after_step, data_parallel=dp)
        history.steps = [start + s for s in history.steps]
        for e in history.evals:
            e["step"] += start
    final = history.last_eval() if history.evals and history.evals[-1]["step"] == end else \
        {"step": end, **run_eval(model, lambda: evaluate(model, tokenizer, task, evals))}
    if out and is_main(dp):
        save_run(Path(out) / "clip.safetensors", model, tokenizer, optimizer, scheduler, end, task)
    metrics = {**final, "task": task, "steps": end, "batch_size": batch_size,
               "train_seconds": history.seconds, "data_seconds": data_seconds,
               "total_seconds": time.perf_counter() - began, "parameters": model.num_parameters(),
               "logit_scale": model.scale, "train_pairs": len(captions)}
    return {"model": model, "tokenizer": tokenizer, "history": history, "scale": scale,
            "metrics": metrics, "evals": evals}


# --------------------------------------------------------------------------- command line


def _train(args):
    result = train_clip(task=args.task, steps=args.steps, batch_size=args.batch_size,
                        chunk_size=args.chunk_size, lr=args.lr, dim=args.dim, depth=args.depth,
                        heads=args.heads, n_train=args.n_train, eval_every=args.eval_every,
                        seed=args.seed, progress=not args.quiet, out=args.out, resume=args.resume,
                        layout=args.layout, twins=args.twins, distributed=args.distributed,
                        local_loss=args.local_loss)
    m = result["metrics"]
    print(f"CLIP on {m['task']}: {m['parameters']:,} parameters, {m['train_pairs']:,} training "
          f"pairs, {m['steps']} steps of {m['batch_size']} in {m['train_seconds']:.0f} s "
          f"({m['total_seconds']:.0f} s in all); learned scale exp(t) = {m['logit_scale']:.1f}")
    if m["task"] == "shapes":
        print(f"zero-shot top-1 on held-out (colour, shape) pairs, all 36 classes competing: "
              f"{m['held_out_top1']:.1%} (among the 6 held-out classes: "
              f"{m['held_out_top1_among_held_out']:.1%}; seen pairs: {m['seen_top1']:.1%})")
        print("retrieval on 1,000 scenes with distinct captions: " + ", ".join(
            f"{k} {v:.1%}" for k, v in m.items() if "R@" in k))
    else:
        print(f"zero-shot top-1 on the digits test split: {m['zero_shot_top1']:.1%}")
    if args.out:
        print(f"checkpoint: {Path(args.out) / 'clip.safetensors'}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("clip", help="CLIP: contrastive image-text pretraining, zero-shot (S12-S17)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a tiny CLIP (a few minutes on 2 cores)")
    t.add_argument("--task", choices=TASKS, default="shapes")
    add_training_options(t, steps=None, batch_size=None, lr=2e-3, depth=2, out="runs/clip",
                         out_help="folder for clip.safetensors",
                         steps_help="default: 3000 (shapes), 300 (digits)",
                         batch_help="default: 128 (shapes), 64 (digits)")
    t.add_argument("--chunk-size", type=int, default=None,
                   help="gradient caching: encode the batch in chunks of this many pairs")
    t.add_argument("--n-train", type=int, default=40000, help="training pairs (shapes)")
    t.add_argument("--layout", choices=LAYOUTS, default="grid",
                   help="shapes: objects in a 3x3 grid of patch-sized cells (48 px), or anywhere (32 px)")
    t.add_argument("--no-twins", dest="twins", action="store_false",
                   help="shapes: no one-word-different twin beside each multi-object scene in its batch")
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--resume", default=None, help="a clip.safetensors to continue from")
    t.add_argument("--local-loss", action="store_true",
                   help="with --distributed: each rank builds only its n x N rows of the logits")
    t.set_defaults(func=_train)
