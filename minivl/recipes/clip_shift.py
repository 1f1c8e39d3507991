"""S17, robustness to distribution shift: a supervised ViT and a zero-shot CLIP
read the same shifted renders (CLIP paper, section 3.3 and figure 13).

The task is the shape of a single object (6 classes), which every shift
leaves well defined. Both models learned from the same training distribution:
single objects of the trained (colour, shape) pairs in a 3 x 3 grid of 48 x 48
images, a quarter of them in grey (the share of grey images in CLIP's
single-object pairs). The ViT is trained on their shape labels; CLIP is a run
of ``minivl clip train`` and classifies by prompts written from
``EVAL_TEMPLATES`` ("a rendering of the circle.", ...), which no training
caption used. Test renders (``minivl.data.clip_pairs.shifted_scenes``): the
training distribution, then objects placed anywhere, at new sizes, in grey,
on a new background.

The slide's claim is about *effective robustness*: how much accuracy a model
keeps under shift, given its accuracy on the training distribution.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from minivl.data import SHAPES, ShapesWorld
from minivl.data.clip_pairs import EVAL_TEMPLATES, SHIFTS, one_object_scenes, shifted_scenes, to_grey
from minivl.metrics import zero_shot_accuracy
from minivl.recipes.clip import load_run
from minivl.recipes.vit import ImageTask, accuracy, train_vit

GREY_SHARE = 0.25  # partial captions 0.5 x shape-only 0.5 x grey 1.0 in the default CLIP recipe


def shape_task(n_train=4000, n_test=600, seed=0) -> ImageTask:
    """The ViT's training data: grid renders of trained pairs, labelled by shape."""
    rng = np.random.default_rng([seed, 7])
    world = ShapesWorld(image_size=48, max_objects=1, grid=3)

    def draw(n):
        scenes = one_object_scenes(world, n, "train", rng)
        images = world.render(scenes)
        grey = rng.random(n) < GREY_SHARE
        images[grey] = to_grey(images[grey])
        return images, np.array([s.objects[0].shape for s in scenes])

    (train_x, train_y), (test_x, test_y) = draw(n_train), draw(n_test)
    return ImageTask("shapes-grid", train_x, train_y, test_x, test_y, SHAPES, patch_size=16)


def shift_experiment(clip, n_test=600, vit_steps=1500, seed=0, progress=True, plot=None) -> dict:
    """Accuracy of both models on the training distribution and under each shift.

    ``clip``: the path of a shapes run of ``minivl clip train``, or a
    ``(model, tokenizer)`` pair trained on the 48 px grid layout.

    Returns ``{"accuracy": {distribution: {"supervised ViT": a, "zero-shot CLIP": b}},
    "vit": ViT metrics, "clip_checkpoint", "seconds"}``; with ``plot``, writes
    the bar chart there.
    """
    began = time.perf_counter()
    model, tokenizer, meta = load_run(clip) if isinstance(clip, (str, Path)) else (*clip, {"task": "shapes"})
    if meta.get("task") != "shapes" or model.config.image_size != 48:
        raise ValueError(f"{clip} must be a shapes run on the 48 px grid layout")
    vit = train_vit(shape_task(seed=seed), steps=vit_steps, seed=seed, progress=progress)
    accuracy_table = {}
    for k, shift in enumerate((None, *SHIFTS)):
        images, labels = shifted_scenes(n_test, shift, np.random.default_rng([seed, 100 + k]))
        accuracy_table[shift or "training distribution"] = {
            "supervised ViT": accuracy(vit["model"], images, labels["shape"]),
            "zero-shot CLIP": zero_shot_accuracy(model, images, labels["shape"], SHAPES,
                                                 EVAL_TEMPLATES, tokenizer, ks=(1,))["top1"],
        }
    source = str(clip) if isinstance(clip, (str, Path)) else "in memory"
    result = {"accuracy": accuracy_table, "vit": vit["metrics"], "clip": source, "n_test": n_test,
              "seconds": time.perf_counter() - began}
    if plot:
        shift_figure(accuracy_table).savefig(plot, dpi=100, bbox_inches="tight")
    return result


def shift_figure(accuracy_table):
    """Grouped bars: each model's accuracy per test distribution (the S17 plot)."""
    from matplotlib.figure import Figure

    names = list(accuracy_table)
    models = list(accuracy_table[names[0]])
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.subplots()
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        values = [accuracy_table[n][model] for n in names]
        bars = ax.bar(np.arange(len(names)) + (k - (len(models) - 1) / 2) * width, values, width,
                      label=model)
        ax.bar_label(bars, [f"{v:.0%}" for v in values], fontsize=7)
    ax.axhline(1 / len(SHAPES), color="grey", lw=0.8, ls=":", label="chance")
    ax.set(xticks=np.arange(len(names)), xticklabels=names, ylim=(0, 1.25), ylabel="shape accuracy",
           title="S17: the same shapes under distribution shift")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.tick_params(axis="x", labelsize=8)
    return fig
