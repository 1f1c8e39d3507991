"""Does a region's position and size reach ViLBERT's visual stream? (lecture S05, issue 12)

The detector's region feature is a mean over the box, so it says what is in
the box, not where the box is; position, and most of size, can only come in
through the 5-d location. This recipe measures how much of it survives:

* the spread over regions (std per dimension, averaged) of the two parts of the
  visual embedding before LayerNorm, ``Linear(feature)`` and
  ``Linear(location)``;
* ridge probes (fitted on three quarters of the regions, scored on the rest)
  for a region's size (small / large: accuracy), x-centre and y-centre
  (R^2) from the detector feature alone, from the visual embedding, and from
  the visual stream's last states (the caption empty: ``[CLS] [SEP]``).

    python -m minivl.recipes.vilbert_probe --out results/vilbert_location_probe.json

compares, by default, ViLBERT at initialisation with the paper's raw location
input and with the standardised one (``minivl/models/vilbert.py::VisualEmbedding``),
and every pretrained checkpoint in the cache of both recipes that exists.
Checkpoints written before the location was standardised have no location
buffers; ``load_vilbert`` reads them with the raw-location config they were trained with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from minivl.metrics import ridge_predict
from minivl.tensor import Tensor, no_grad

RAW_LOCATION = {"location_mean": (0.0,) * 5, "location_std": (1.0,) * 5, "location_clip": 0.0,
                "location_init_std": 0.02}  # the paper's input and BERT's init
RECIPES = {"raw_location": "std-feats-align5", "standardised_location": "std-feats-std-locs-align5"}


def ridge_probe(X, y, classify: bool = False, lam: float = 1e-2, seed: int = 0) -> float:
    """Ridge regression from ``X (N, D)`` to ``y (N,)`` on a random 3/4, scored on the other 1/4:
    R^2 (``classify=False``), or, for 0/1 labels fitted as -1/+1, accuracy. Features are
    standardised on the fitted part; ``lam`` is per fitted example."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    if X.ndim != 2 or y.shape != (len(X),) or len(X) < 8:
        raise ValueError(f"X must be (N, D) and y (N,) with N >= 8, got {X.shape} and {y.shape}")
    idx = np.random.default_rng(seed).permutation(len(X))
    fit, test = idx[: len(X) * 3 // 4], idx[len(X) * 3 // 4:]
    target = 2 * y - 1 if classify else y
    pred = ridge_predict(X[fit], target[fit], X[test], lam)  # (N_test,)
    if classify:
        return float(((pred > 0) == (y[test] == 1)).mean())
    return float(1 - ((pred - y[test]) ** 2).mean() / y[test].var())


def probes(X, sizes, cx, cy) -> dict:
    return {"size_accuracy": ridge_probe(X, sizes, classify=True), "x_centre_r2": ridge_probe(X, cx),
            "y_centre_r2": ridge_probe(X, cy)}


def load_vilbert(path):
    """A ViLBERT checkpoint; one from before the location was standardised (no location
    buffers in the file) is rebuilt with ``RAW_LOCATION``, the input it was trained on."""
    from minivl.checkpoint import load_checkpoint, load_metadata
    from minivl.io import load
    from minivl.models.vilbert import ViLBERT, ViLBERTConfig

    state = load(path)
    if "visual_embeddings.location_mean" in state:
        return load_checkpoint(ViLBERT, path)
    config = ViLBERTConfig(**{**json.loads(load_metadata(path)["config"]), **RAW_LOCATION})
    model = ViLBERT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"visual_embeddings.location_mean", "visual_embeddings.location_scale"}:
        raise ValueError(f"{path}: not a ViLBERT checkpoint (missing {missing}, unexpected {unexpected})")
    return model


def measure(model, regions, sizes, cx, cy, cls_sep) -> dict:
    """Spreads of the embedding's two parts and the probes from the embedding and the stream."""
    model.eval()
    e = model.visual_embeddings
    valid = regions.mask[:, 1:]
    with no_grad():
        feats, locs = Tensor(regions.feats), Tensor(regions.locs)
        f = e.feature(feats).numpy()[:, 1:][valid]  # (regions, Dv)
        lo = e.location(e.scale_locations(locs)).numpy()[:, 1:][valid]
        emb = e(feats, locs).numpy()[:, 1:][valid]
        ids = np.tile(np.asarray([cls_sep]), (len(regions), 1))
        visual = model.encode(ids, np.ones(ids.shape, bool), regions.feats, regions.locs,
                              regions.mask).visual.numpy()[:, 1:][valid]
    spread_f, spread_l = float(f.std(0).mean()), float(lo.std(0).mean())
    return {"feature_part_spread": spread_f, "location_part_spread": spread_l,
            "location_over_feature": spread_l / spread_f,
            "embedding": probes(emb, sizes, cx, cy), "visual_stream": probes(visual, sizes, cx, cy)}


def run(n_scenes: int = 1500, checkpoints: dict | None = None, seeds=(0, 1)) -> dict:
    from minivl.checkpoint import cache_dir
    from minivl.data.regions import RegionEncoder
    from minivl.data.world import ShapesWorld
    from minivl.random import manual_seed
    from minivl.recipes.vilbert import default_bert
    from minivl.recipes.vilbert_table import base_config, fresh_encoder

    encoder = RegionEncoder.load_default()
    scenes = ShapesWorld(image_size=encoder.image_size, max_objects=3, seed=0).iid_scenes(
        n_scenes, "val", rng=np.random.default_rng(7))
    regions = encoder.encode_scenes(scenes)
    valid = regions.mask[:, 1:]
    locs = regions.locs[:, 1:][valid]  # (regions, 5)
    sizes = np.concatenate([s.sizes for s in scenes]).astype(np.float64)
    cx, cy = (locs[:, 0] + locs[:, 2]) / 2, (locs[:, 1] + locs[:, 3]) / 2
    bert, tokenizer = default_bert()
    special = tokenizer.special_tokens
    cls_sep = [special["[CLS]"], special["[SEP]"]]
    out = {"regions": int(valid.sum()), "scenes": n_scenes,
           "detector_feature": probes(regions.feats[:, 1:][valid], sizes, cx, cy), "models": {}}
    config = base_config(bert, tokenizer, encoder)
    for name, overrides in (("init_raw_location", RAW_LOCATION), ("init_standardised_location", {})):
        manual_seed(0)
        model = fresh_encoder("vilbert", replace(config, **overrides), bert)
        out["models"][name] = measure(model, regions, sizes, cx, cy, cls_sep)
    if checkpoints is None:
        folder = cache_dir()
        checkpoints = {f"pretrained_{label}_seed{s}": folder / f"vilbert-seed{s}-steps3000-{recipe}"
                       / "vilbert.safetensors" for label, recipe in RECIPES.items() for s in seeds}
    for name, path in checkpoints.items():
        if Path(path).exists():
            out["models"][name] = {"checkpoint": str(path),
                                   **measure(load_vilbert(path), regions, sizes, cx, cy, cls_sep)}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/vilbert_location_probe.json")
    parser.add_argument("--scenes", type=int, default=1500, help="held-out scenes probed (about 2 regions each)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    result = run(args.scenes)
    result = {"command": "python -m minivl.recipes.vilbert_probe " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": platform.machine(), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, m in result["models"].items():
        print(f"{name:40} location/feature {m['location_over_feature']:.3f}  stream: size "
              f"{m['visual_stream']['size_accuracy']:.3f} x R2 {m['visual_stream']['x_centre_r2']:.3f}")


if __name__ == "__main__":
    main()
