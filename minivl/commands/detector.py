"""``minivl detector train``: the command line over ``minivl.recipes.detector``
(lecture S04): train the region classifier ViLBERT's region tokens come from,
report its region accuracy on held-out scenes, save it where
``RegionEncoder.load_default`` finds it (the cache, and beside ``--results``:
``--results results/detector.json`` writes ``results/detector.safetensors``)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from minivl.checkpoint import save_checkpoint
from minivl.commands._options import write_results
from minivl.recipes.detector import DEFAULT_CONFIG, DEFAULTS, default_path, save_default, train_detector


def _train(args):
    began = time.perf_counter()
    runs = {}
    for seed in args.seeds:
        options = {**DEFAULTS, "steps": args.steps, "lr": args.lr, "seed": seed}
        result = train_detector(DEFAULT_CONFIG, progress=not args.quiet, **options)
        m = result["metrics"]
        runs[f"seed{seed}"] = m
        print(f"seed {seed}: {m['parameters']:,} parameters, {m['steps']} steps in {m['train_seconds']:.0f} s; "
              f"held-out region accuracy {m['test']['accuracy']:.3f} (shape {m['test']['shape_accuracy']:.3f}, "
              f"colour {m['test']['colour_accuracy']:.3f}, {m['test']['regions']} regions), "
              f"jittered boxes {m['test_jittered']['accuracy']:.3f}; chance {m['chance']:.3f}")
        if options == DEFAULTS:  # the default recipe: fill the cache (and publish it beside the results)
            for path in (default_path(), Path(args.results).with_suffix(".safetensors") if args.results else None):
                if path is not None:
                    save_default(result["model"], path, m["test"]["accuracy"])
                    print(f"default detector: {path}")
        if args.out:
            path = f"{args.out}/detector-seed{seed}.safetensors"
            save_checkpoint(result["model"], path, test_accuracy=m["test"]["accuracy"])
            print(f"checkpoint: {path}")
    if args.results:
        payload = {"config": asdict(DEFAULT_CONFIG), "recipe": {**DEFAULTS, "steps": args.steps, "lr": args.lr},
                   "runs": runs, "load_average_1_5_15_min": list(os.getloadavg())}  # shared machines: say how busy
        print(f"results: {write_results(args.results, 'detector train', vars(args), payload)}")
    print(f"{time.perf_counter() - began:.0f} s in all")
    return 0


def register(subparsers):
    p = subparsers.add_parser("detector", help="the region detector ViLBERT reads from (S04)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train the detector (about a minute per seed on 2 idle cores)")
    t.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    t.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    t.add_argument("--seeds", type=int, nargs="+", default=[DEFAULTS["seed"]])
    t.add_argument("--out", default=None, help="folder for one checkpoint per seed")
    t.add_argument("--results", default=None, help="write the accuracies as JSON here")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)
