"""ViLBERT's text stream from minivl's BERT or from a real pretrained BERT (all-MiniLM-L6-v2),
compared on the transfer tasks (lecture S03; issue 12's "compare both on the transfer tasks").

Two text initialisations (``TEXT_INITS``):

* ``minivl``: minivl's own BERT (``recipes/vilbert.py::default_bert``; 2 blocks, 64 wide,
  BPE vocabulary of the caption corpus, pretrained on shapes-world sentences);
* ``minilm``: all-MiniLM-L6-v2 (``minivl/models/minilm.py``, the ``pretrained`` extra; 6 blocks,
  384 wide, 12 heads, uncased WordPiece vocabulary of 30,522, pretrained on English).

``text_init_config`` fits ViLBERT's default config to the BERT: text width, heads, MLP width,
vocabulary and depth are the BERT's, and the co-attention layers keep their place counted
from the *last* text block (ViLBERT's paper puts them at the last 6 of BERT-base's 12 blocks):
the default ``((1, 0), (2, 1))`` over 2 blocks becomes ``((5, 0), (6, 1))`` over MiniLM's 6,
so MiniLM's first 5 blocks are a text-only prefix. The visual stream, co-attention width,
pooler width and heads are the same in both arms.

The comparison (``compare``, ``main``) is like for like: the same scenes, items and regions
(each arm tokenizes the texts with its own tokenizer), the same fine-tuning schedule, no
multi-modal pretraining in either arm (the cached pretrainings are of minivl's BERT and its
vocabulary only), and the text stream frozen in both (``finetune(freeze_text=True)``): only
co-attention, the visual stream, the poolers and the task head train. Frozen, because MiniLM is
22.7M parameters (11.7M of them the word embeddings) where the whole minivl ViLBERT is 0.37M,
and one fine-tuning step through it costs about 10x minivl's (0.5 s against 0.045 s, VQA, batch
32, numba, one thread at load ~3). The arm ``minivl_trained`` (minivl's BERT, text stream
trained too, as the transfer table's ``vilbert_no_pretraining``) shows what freezing costs minivl.
Because of that cost the schedule is ``SCHEDULE`` (``vilbert_table``) scaled by ``fraction``
(default one half) for every arm.

    python -m minivl.recipes.vilbert_text_init --out results/vilbert_text_init.json

writes every run's val and test metrics, parameter counts (all and trainable), times, the
machine's load average, the date and the command; the file is rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

TEXT_INITS = ("minivl", "minilm")
# arm -> (text init, text stream frozen)
ARMS = {"minivl": ("minivl", True), "minivl_trained": ("minivl", False), "minilm": ("minilm", True)}
DEFAULT_TASKS = ("vqa", "refexp", "foil")


def text_stream(text_init: str, progress: bool = False):
    """``(bert, tokenizer)`` of a text initialisation (one of ``TEXT_INITS``)."""
    if text_init == "minivl":
        from minivl.recipes.vilbert import default_bert

        return default_bert(progress)
    if text_init == "minilm":
        from minivl.models.minilm import load_minilm

        return load_minilm()
    raise ValueError(f"text_init must be one of {TEXT_INITS}, got {text_init!r}")


def text_init_config(bert, tokenizer, regions, co_attention_at=None):
    """ViLBERT's config for a text stream of ``bert``: ``vilbert_table.base_config`` at the
    BERT's depth, each co-attention pair's text index moved by the depth added, so each layer
    keeps its place counted from the last text block (see the module docstring)."""
    from minivl.recipes.vilbert_table import base_config

    config = base_config(bert, tokenizer, regions, co_attention_at)
    extra = bert.config.depth - config.text_depth
    if extra < 0:
        raise ValueError(f"a BERT of {bert.config.depth} blocks is shallower than the text stream's "
                         f"{config.text_depth}")
    return replace(config, text_depth=bert.config.depth,
                   co_attention_at=tuple((t + extra, v) for t, v in config.co_attention_at))


def fresh_vilbert(bert, tokenizer, regions, co_attention_at=None):
    """A ViLBERT whose text stream is ``bert`` (all its blocks), no multi-modal pretraining."""
    from minivl.models.vilbert import ViLBERT

    model = ViLBERT(text_init_config(bert, tokenizer, regions, co_attention_at))
    model.load_bert(bert)
    return model


def compare(tasks=DEFAULT_TASKS, seeds=(0,), arms=tuple(ARMS), fraction: float = 0.5, lr: float = 1e-3,
            head_lr: float = 3e-3, sizes=None, progress: bool = False, out=None, command: str = "",
            log=print) -> dict:
    """Fine-tune ViLBERT with each arm's text stream on each task for each seed (see the module
    docstring); the runs in the order seed, arm, task. ``sizes``: (train, val, test) scenes of
    every task (None: the table's ``task_sizes``). Returns (and with ``out`` writes after every
    run) the table."""
    from minivl import backend
    from minivl.data.regions import RegionEncoder
    from minivl.data.vilbert_tasks import make_task, scene_parts
    from minivl.data.world import ShapesWorld
    from minivl.random import manual_seed
    from minivl.recipes.vilbert_table import HEADLINE, SCHEDULE, task_sizes
    from minivl.recipes.vilbert_transfer import chance, finetune

    for arm in arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {sorted(ARMS)}")
    begin = time.perf_counter()
    regions = RegionEncoder.load_default(progress=progress)
    world = ShapesWorld(image_size=regions.image_size, max_objects=3, seed=0)
    counts = {t: task_sizes(t, sizes) for t in tasks}
    parts = {n: scene_parts(world, regions, n, seed=0) for n in sorted(set(counts.values()))}  # one detector pass
    streams = {init: text_stream(init, progress) for init in sorted({ARMS[a][0] for a in arms})}
    data = {}
    for init, (bert, tok) in streams.items():
        limit = min(bert.config.max_len, 64)
        data[init] = {t: make_task(t, world, tok, regions, seed=0, max_len=limit, parts=parts[counts[t]])
                      for t in tasks}
    schedule = {t: (max(1, round(SCHEDULE[t][0] * fraction)), SCHEDULE[t][1]) for t in tasks}
    table = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "tasks": list(tasks), "seeds": list(seeds), "arms": {a: {"text_init": ARMS[a][0],
                                                                     "text_frozen": ARMS[a][1]} for a in arms},
             "schedule": schedule, "schedule_fraction": fraction, "lr": lr, "head_lr": head_lr,
             "multimodal_pretraining": False, "sizes_scenes": {t: list(counts[t]) for t in tasks},
             "items": {init: {t: {p: len(s) for p, s in d.items()} for t, d in per.items()}
                       for init, per in data.items()},
             "chance": {t: chance(t, data[next(iter(data))][t]["test"]) for t in tasks},
             "headline_metric": {t: HEADLINE[t] for t in tasks}, "backend": backend.current(),
             "machine": platform.machine(), "cpus": os.cpu_count(),
             "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS")},
             "load_average_start": os.getloadavg(), "runs": []}
    for seed in seeds:
        for arm in arms:
            init, frozen = ARMS[arm]
            bert, tok = streams[init]
            for task in tasks:
                manual_seed(seed)  # the visual stream's and co-attention's initialisation
                encoder = fresh_vilbert(bert, tok, regions)
                steps, batch_size = schedule[task]
                load = os.getloadavg()
                run = finetune(task, encoder, data[init][task], steps=steps, batch_size=batch_size, lr=lr,
                               head_lr=head_lr, seed=seed, progress=progress, desc=f"{task} {arm} s{seed}",
                               freeze_text=frozen)
                m = run["metrics"]
                record = {"task": task, "arm": arm, "text_init": init, "text_frozen": frozen, "seed": seed,
                          "co_attention_at": [list(p) for p in encoder.config.co_attention_at],
                          "text_dim": encoder.config.text_dim, "text_depth": encoder.config.text_depth,
                          "parameters": encoder.num_parameters(),
                          "trainable_parameters": run["model"].num_parameters(trainable_only=True),
                          "load_average_before": load, "load_average_after": os.getloadavg(), **m}
                table["runs"].append(record)
                log(f"{task:7} {arm:15} seed {seed}: test {HEADLINE[task]} {m['test'][HEADLINE[task]]:.3f} "
                    f"(val {m['val'][HEADLINE[task]]:.3f}; {m['train_seconds']:.0f} s, load {load[0]:.1f})")
                table["seconds"] = time.perf_counter() - begin
                table["summary"] = summary(table)
                if out is not None:
                    write(table, out)
    return table


def summary(table: dict) -> dict:
    """``{task: {arm: {"mean": m, "seeds": [..]}}}`` of each run's headline test metric."""
    from minivl.recipes.vilbert_table import HEADLINE

    out: dict = {}
    for r in table["runs"]:
        cell = out.setdefault(r["task"], {}).setdefault(r["arm"], {"seeds": [], "values": []})
        cell["seeds"].append(r["seed"])
        cell["values"].append(r["test"][HEADLINE[r["task"]]])
    for per in out.values():
        for cell in per.values():
            cell["mean"] = sum(cell["values"]) / len(cell["values"])
    return out


def write(table: dict, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1, default=float) + "\n")


def main(argv=None) -> None:
    from minivl.data.vilbert_tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/vilbert_text_init.json")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    parser.add_argument("--fraction", type=float, default=0.5, help="of the table's SCHEDULE steps, every arm")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--head-lr", type=float, default=3e-3)
    parser.add_argument("--scenes", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                        help="scenes of every task (default: the table's TRAIN_SCENES per task, 300, 1000)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    import minivl

    if not os.environ.get("MINIVL_BACKEND"):
        minivl.use("numba")  # as minivl vilbert finetune does (commands/vilbert.py::choose_backend)
    command = "python -m minivl.recipes.vilbert_text_init " + " ".join(sys.argv[1:] if argv is None else argv)
    compare(args.tasks, args.seeds, args.arms, args.fraction, args.lr, args.head_lr, args.scenes, args.progress,
            args.out, command)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
