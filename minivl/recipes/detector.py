"""How the region detector ViLBERT reads from is trained (lecture S04).

``train_detector`` trains ``minivl.models.detector.Detector`` to name the
object inside each ground-truth box of shapes-world scenes: cross-entropy over
the 36 (shape, colour) classes on every real box, the boxes jittered by up to
``jitter`` of their size so the classifier also copes with imperfect boxes.
Scenes come from the i.i.d. parts of ``minivl/data/splits.py``: training on
"train" scenes, region accuracy on "test" scenes, with the exact boxes and
with jittered ones.

``default_detector()`` is what the region tokens use
(``RegionEncoder.load_default``): the detector of the default recipe, read
from the checkpoint committed beside its results (``results/detector.safetensors``,
written by ``minivl detector train --results results/detector.json``) when its
recipe is today's, else from a cache file, else trained and written there on
first use. The cache folder is ``$MINIVL_CACHE`` or ``~/.cache/minivl``; the
file name carries a hash of the recipe's settings, so a changed recipe never
reads a stale file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from minivl import functional as F
from minivl.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from minivl.data.boxes import stack_objects
from minivl.data.regions import jitter_boxes
from minivl.data.render import render
from minivl.data.shapes import N_CLASSES
from minivl.data.world import ShapesWorld
from minivl.models.detector import Detector, DetectorConfig
from minivl.models.vision import preprocess
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import no_grad
from minivl.train import History, run_eval, train

# The default recipe: what default_detector() trains and caches.
DEFAULTS = dict(steps=600, batch_size=32, lr=1e-2, jitter=0.1, n_train=3000, n_test=500,
                max_objects=4, image_size=32, seed=0)
DEFAULT_CONFIG = DetectorConfig()


def detector_scenes(n_train, n_test, image_size=32, max_objects=4, seed=0):
    """Train and test scenes (i.i.d. parts "train" and "test"), their pixels and padded boxes."""
    world = ShapesWorld(image_size=image_size, max_objects=max_objects, seed=seed)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        scenes = world.iid_scenes(n, part, rng=np.random.default_rng([seed, len(out)]))
        objects = stack_objects(scenes, max_objects)
        out[part] = {"scenes": scenes, "images": render(scenes), "boxes": objects["boxes"],
                     "mask": objects["mask"], "labels": np.where(objects["mask"], objects["class_ids"], -1)}
    return out


def predict(model: Detector, images, boxes, mask, batch_size: int = 250) -> np.ndarray:
    """Class probabilities ``(N, R, n_classes)`` of uint8 images' boxes, without a graph."""
    out = []
    with no_grad():
        for i in range(0, len(images), batch_size):
            sl = slice(i, i + batch_size)
            out.append(F.softmax(model(preprocess(images[sl]), boxes[sl], mask[sl]), axis=-1).numpy())
    return np.concatenate(out)


def region_accuracy(model: Detector, part: dict, jitter: float = 0.0, seed: int = 0) -> dict:
    """Accuracy over the real boxes of ``part``: class, shape and colour; boxes optionally jittered."""
    boxes = part["boxes"]
    if jitter:
        boxes = jitter_boxes(boxes, jitter, model.config.image_size, np.random.default_rng(seed))
    pred = predict(model, part["images"], boxes, part["mask"]).argmax(-1)  # (N, R)
    real, labels = part["mask"], part["labels"]
    n_colours = N_CLASSES // 6
    hit = pred[real] == labels[real]
    return {"accuracy": float(hit.mean()),
            "shape_accuracy": float(np.mean(pred[real] // n_colours == labels[real] // n_colours)),
            "colour_accuracy": float(np.mean(pred[real] % n_colours == labels[real] % n_colours)),
            "regions": int(real.sum())}


def train_detector(config: DetectorConfig | None = None, steps=DEFAULTS["steps"],
                   batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"], jitter=DEFAULTS["jitter"],
                   n_train=DEFAULTS["n_train"], n_test=DEFAULTS["n_test"],
                   max_objects=DEFAULTS["max_objects"], image_size=DEFAULTS["image_size"],
                   seed=DEFAULTS["seed"], eval_every: int = 100, progress: bool = True) -> dict:
    """Train a Detector; returns ``{"model", "history", "metrics"}``.

    ``metrics``: region accuracy on the held-out test scenes with exact and with
    jittered boxes (class, shape, colour), train accuracy, time and size.
    """
    manual_seed(seed)
    config = config or DetectorConfig(image_size=image_size)
    if config.image_size != image_size:
        raise ValueError(f"config.image_size={config.image_size} differs from image_size={image_size}")
    model = Detector(config)
    data = detector_scenes(n_train, n_test, image_size, max_objects, seed)
    train_part, test_part = data["train"], data["test"]
    rng = np.random.default_rng([seed, 7])

    def batches():
        while True:
            for idx in np.array_split(rng.permutation(n_train), max(1, n_train // batch_size)):
                boxes = train_part["boxes"][idx]
                if jitter:
                    boxes = jitter_boxes(boxes, jitter, image_size, rng)
                yield {"images": preprocess(train_part["images"][idx]), "boxes": boxes,
                       "mask": train_part["mask"][idx], "labels": train_part["labels"][idx]}

    def step(model, batch):
        logits = model(batch["images"], batch["boxes"], batch["mask"])  # (b, R, n_classes)
        return F.cross_entropy(logits, batch["labels"], ignore_index=-1)

    evaluate = lambda: {"test_accuracy": region_accuracy(model, test_part)["accuracy"]}
    start = {"step": 0, **run_eval(model, evaluate)}
    params = dict(model.named_parameters())
    decayed = [p for p in params.values() if p.ndim >= 2]
    others = [p for p in params.values() if p.ndim < 2]
    optimizer = AdamW([{"params": decayed}, {"params": others, "weight_decay": 0.0}], lr=lr, weight_decay=0.05)
    scheduler = WarmupCosineLR(optimizer, steps, min(30, steps))
    history: History = train(model, step, batches(), optimizer, steps, scheduler, evaluate=evaluate,
                             eval_every=eval_every, progress=progress, desc="detector")
    history.after(0, start)
    model.eval()
    n = min(500, n_train)
    train_subset = {k: v[:n] for k, v in train_part.items() if k != "scenes"}
    metrics = {
        "test": region_accuracy(model, test_part),
        "test_jittered": {"jitter": jitter or 0.1, **region_accuracy(model, test_part, jitter or 0.1, seed)},
        "train_accuracy": region_accuracy(model, train_subset)["accuracy"],
        "test_accuracy_start": start["test_accuracy"],
        "train_seconds": history.seconds, "steps": steps, "parameters": model.num_parameters(),
        "train_scenes": n_train, "test_scenes": n_test, "chance": 1 / config.n_classes,
    }
    return {"model": model, "history": history, "metrics": metrics, "data": data}


# the default recipe's checkpoint, committed with results/detector.json
PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "detector.safetensors"


def settings() -> dict:
    """The default recipe and model config: what names the default detector."""
    return {**DEFAULTS, "config": asdict(DEFAULT_CONFIG)}


def default_path() -> Path:
    """Where the default detector is cached: ``$MINIVL_CACHE`` or ``~/.cache/minivl``."""
    from minivl.checkpoint import cache_dir

    folder = cache_dir()
    digest = hashlib.sha256(json.dumps(settings(), sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"detector-{digest}.safetensors"


def save_default(model: Detector, path, test_accuracy: float) -> None:
    """Write ``model`` as the default recipe's detector (its settings in the metadata)."""
    save_checkpoint(model, path, recipe=json.dumps(settings(), sort_keys=True), test_accuracy=test_accuracy)


def _is_default(path: Path) -> bool:
    return path.exists() and checkpoint_metadata(path).get("recipe") == json.dumps(settings(), sort_keys=True)


def default_detector(progress: bool = False) -> Detector:
    """The detector of the default recipe (eval mode): the committed checkpoint if it was
    trained by today's recipe, else the cached one, else trained (about a minute on two
    idle cores) and cached."""
    for path in (PUBLISHED, default_path()):
        if _is_default(path):
            return load_checkpoint(Detector, path).eval()
    result = train_detector(DEFAULT_CONFIG, progress=progress, **DEFAULTS)
    save_default(result["model"], default_path(), result["metrics"]["test"]["accuracy"])
    return result["model"]
