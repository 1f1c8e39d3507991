"""How a tiny CLIP is trained and evaluated (lecture S12-S17; Radford et al. 2021).

The recipe the command (``minivl clip train``), the tour and the notebook
share:

* data: ``minivl.data.clip_pairs.make_clip_data`` (shapes-world pairs with
  twins, or the digits; evaluation sets that share nothing with training);
* a ``CLIPTokenizer`` (byte-level BPE) learned on the training captions;
* ``loss``: the symmetric InfoNCE of S15, optionally through the gradient cache
  (``chunk_size``) for batches larger than memory allows;
* ``make_optimizer``: AdamW with CLIP's betas, weight decay on matrices only,
  warm-up + cosine; the temperature is clipped to <= log(100) after each step;
* ``evaluate``: zero-shot top-1 with prompts written from ``EVAL_TEMPLATES``
  (never a training caption) on held-out (colour, shape) pairs and on seen
  pairs, recall@1/5/10 both ways on 1,000 scenes absent from training; on the
  digits, classification with text labels (every digit is trained on, so it
  is not zero-shot).

``train_clip(out=...)`` saves its training state with ``minivl.checkpoint`` so
that ``resume=`` continues a run exactly where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from minivl.checkpoint import checkpoint_metadata, load_checkpoint, load_training_state, save_training_state
from minivl.data import CLASS_NAMES, DIGIT_NAMES
from minivl.data.clip_pairs import (
    DIGIT_EVAL_TEMPLATES,
    DIGIT_TRAIN_TEMPLATES,
    EVAL_TEMPLATES,
    TRAIN_TEMPLATES,
    make_clip_data,
    overlap,
)
from minivl.distributed import data_parallel_for, distributed_info_nce, is_main
from minivl.losses import info_nce
from minivl.metrics import embed_images, embed_texts, retrieval_recall, zero_shot_accuracy
from minivl.models.clip import CLIP
from minivl.models.gradcache import grad_cache_loss
from minivl.models.vision import preprocess
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tokenizers.clip import CLIPTokenizer
from minivl.train import History, run_eval, train

TASKS = ("shapes", "digits")
LAYOUTS = ("grid", "free")  # where shapes-world objects sit: in a 3 x 3 grid of cells, or anywhere
GRID = 3
CHECKPOINT = "clip.safetensors"


def batches(images, ids, mask, batch_size, seed, start=0, groups=1):
    """Random batches forever; batch ``s`` depends only on ``(seed, s)``, so a resumed
    run sees exactly the batches the uninterrupted run would have.

    ``groups``: rows come in consecutive groups of this size that are drawn
    together (the twins of ``shapes_pairs``).
    """
    if batch_size % groups:
        raise ValueError(f"batch_size {batch_size} must be a multiple of groups {groups}")
    step = start
    offsets = np.arange(groups)
    while True:
        step += 1
        first = np.random.default_rng([seed, step]).choice(len(ids) // groups, batch_size // groups,
                                                           replace=False)
        pick = (groups * first[:, None] + offsets).ravel()  # (B,)
        yield preprocess(images[pick]), ids[pick], mask[pick]  # uint8 -> (B, C, S, S)


def loss(model, batch, chunk_size=None):
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


def evaluate(model, tokenizer, task, evals, templates=None) -> dict:
    """The honest evaluation of a CLIP (prompts from templates no training caption used).

    Shapes: ``held_out_top1`` (never-trained pairs, all 36 classes
    competing), ``held_out_top1_among_held_out``, ``seen_top1`` (trained pairs
    at renders absent from training) and recall@k; ``*_train_templates`` repeat
    the zero-shot scores with the training templates, the leaky protocol used
    before issue 10. Digits: ``text_label_top1`` (every digit is trained on).
    """
    if task == "digits":
        images, labels = evals["test"]
        score = lambda t: zero_shot_accuracy(model, images, labels, DIGIT_NAMES, t, tokenizer)["top1"]
        return {"text_label_top1": score(templates or DIGIT_EVAL_TEMPLATES),
                "text_label_top1_train_templates": score(DIGIT_TRAIN_TEMPLATES)}
    images, labels = evals["held_out"]
    held = np.asarray(evals["held_out_ids"])
    out = {}
    for suffix, t in (("", templates or EVAL_TEMPLATES), ("_train_templates", TRAIN_TEMPLATES)):
        classifier = model.zero_shot_classifier(CLASS_NAMES, t, tokenizer)
        probs = model.predict(images, classifier)  # (B, 36): every class competes
        seen_images, seen_labels = evals["seen"]
        out[f"held_out_top1{suffix}"] = float(np.mean(probs.argmax(axis=1) == labels))
        out[f"held_out_top1_among_held_out{suffix}"] = float(
            np.mean(held[probs[:, held].argmax(axis=1)] == labels))
        out[f"seen_top1{suffix}"] = float(np.mean(
            model.predict(seen_images, classifier).argmax(axis=1) == seen_labels))
    r_images, r_texts = evals["retrieval"]
    ids, mask = tokenizer(r_texts)
    return {**out, **retrieval_recall(embed_images(model, r_images), embed_texts(model, ids, mask))}


def load_run(path):
    """``(model, tokenizer, metadata)`` of a run saved by ``train_clip(out=...)``."""
    path = Path(path)
    model = load_checkpoint(CLIP, path)
    tokenizer = CLIPTokenizer.load(path.with_name(path.stem + ".tokenizer.json"),
                                   model.config.context_length)
    return model, tokenizer, checkpoint_metadata(path)


def _sizes(task, layout, image_size, patch_size):
    if task == "digits":
        return image_size or 16, patch_size or 4, None
    if layout == "grid":  # one patch per grid cell: every object lies whole inside one patch
        image_size = image_size or 48
        return image_size, patch_size or image_size // GRID, GRID
    return image_size or 32, patch_size or 8, None


def train_clip(task="shapes", steps=None, batch_size=None, chunk_size=None, lr=2e-3, warmup=50,
               weight_decay=0.1, image_size=None, patch_size=None, dim=64, depth=2, heads=4,
               embed_dim=64, n_train=40000, vocab_size=320, eval_every=250, seed=0,
               progress=True, out=None, resume=None, stop_after=None, multi_fraction=0.5,
               partial_captions=0.5, twins=True, grey=1.0, n_zero_shot=600,
               n_retrieval=1000, layout="grid", distributed=False, local_loss=False) -> dict:
    """Train a CLIP on ``task`` ("shapes" or "digits") and evaluate it.

    Returns ``{"model", "tokenizer", "history", "scale", "metrics", "evals"}``:
    ``scale`` is exp(logit_scale) after every step, ``metrics`` the final
    evaluation, the train/evaluation overlap counts (all 0) and timings,
    ``evals`` the evaluation data (for plots). With ``out`` the training state
    goes to ``out/clip.safetensors`` (every ``eval_every`` steps and at the
    end); ``resume`` names such a file and continues from its step up to
    ``steps``. ``stop_after`` ends this session early, after that many steps
    in all, with the schedule still planned for ``steps``.

    Shapes data (``minivl.data.clip_pairs``): ``n_train`` pairs,
    ``multi_fraction`` of them multi-object scenes, ``partial_captions`` of
    the single-object captions naming one attribute only, ``grey`` of the
    shape-only ones shown in grey, ``twins``. ``layout="grid"`` draws 48 x 48
    scenes whose objects sit in a 3 x 3 grid of cells, one 16 x 16 patch per
    cell; ``"free"`` places objects anywhere in 32 x 32 images read in 8 x 8
    patches. ``chunk_size`` turns on gradient caching; ``distributed``: data
    parallel over the ranks of ``mpirun`` (``local_loss``: the n x N logits).
    """
    if distributed and chunk_size:
        raise ValueError("chunk_size (gradient caching) and distributed cannot be combined: "
                         "spread the batch over ranks instead")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    steps = steps or (3000 if task == "shapes" else 300)
    batch_size = batch_size or (128 if task == "shapes" else 64)
    began = time.perf_counter()
    manual_seed(seed)
    image_size, patch_size, grid = _sizes(task, layout, image_size, patch_size)
    twins = twins and task == "shapes"
    images, captions, evals = make_clip_data(task, 2 * (n_train // 2), image_size, seed, n_zero_shot,
                                             n_retrieval, multi_fraction, partial_captions, twins,
                                             grey, grid)
    if resume:
        model, tokenizer, meta = load_run(resume)
        if meta.get("task") != task:
            raise ValueError(f"{resume} is a {meta.get('task')!r} run, not {task!r}")
        trained = (model.config.image_size, model.config.patch_size)
        if trained != (image_size, patch_size):
            raise ValueError(
                f"{resume} was trained on {trained[0]} px images in {trained[1]} px patches, this "
                f"run draws {image_size} px images in {patch_size} px patches: resume with the "
                "same layout (and image and patch sizes)")
    else:
        tokenizer = CLIPTokenizer.train(captions, vocab_size, context_length=32)
        model = CLIP(embed_dim=embed_dim, image_size=image_size, patch_size=patch_size,
                     in_channels=3 if task == "shapes" else 1, vision_dim=dim, vision_depth=depth,
                     vision_heads=heads, vocab_size=tokenizer.vocab_size, context_length=32,
                     text_dim=dim, text_depth=depth, text_heads=heads)
    optimizer, scheduler = make_optimizer(model, lr, weight_decay, steps, warmup)
    start = load_training_state(resume, model, optimizer, scheduler) if resume else 0
    data_seconds = time.perf_counter() - began

    ids, mask = tokenizer(captions)  # (N, L)
    scale = []
    end = min(steps, stop_after or steps)
    dp = data_parallel_for(model, distributed, dict(task=task, steps=steps, batch_size=batch_size,
                                                    lr=lr, seed=seed, start=start,
                                                    local_loss=local_loss, layout=layout))

    def save_state(step):
        path = Path(out) / CHECKPOINT
        save_training_state(path, model, optimizer, scheduler, step, task=task)
        tokenizer.save(path.with_name(path.stem + ".tokenizer.json"))

    def after_step(step):
        model.clamp_logit_scale_()
        scale.append(model.scale)
        if out and (start + step) % max(eval_every, 1) == 0 and is_main(dp):
            save_state(start + step)

    if dp is not None:
        loss_fn = lambda m, b: distributed_info_nce(m.encode_image(b[0]), m.encode_text(b[1], b[2]),
                                                    m.logit_scale, dp.communicator, local_loss)
    else:
        loss_fn = lambda m, b: loss(m, b, chunk_size)
    history = History()
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
        save_state(end)
    metrics = {**final, **overlap(images, captions, evals), "task": task, "steps": end,
               "batch_size": batch_size, "seed": seed, "train_seconds": history.seconds,
               "data_seconds": data_seconds, "total_seconds": time.perf_counter() - began,
               "parameters": model.num_parameters(), "logit_scale": model.scale,
               "train_pairs": len(captions)}
    return {"model": model, "tokenizer": tokenizer, "history": history, "scale": scale,
            "metrics": metrics, "evals": evals}
