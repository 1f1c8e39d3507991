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
``((1, 0), (2, 1))`` over 2 blocks becomes ``((5, 0), (6, 1))`` over MiniLM's 6, so MiniLM's
first 5 blocks are a text-only prefix. ``compare`` runs at ``PLACEMENT``, that
``((1, 0), (2, 1))``: ViLBERT's default until 2026-12-05, when the committed comparison was
measured; ``text_init_config``'s own default follows ``ViLBERTConfig`` (now the paper's
``((1, 0), (1, 1))``, which becomes ``((5, 0), (5, 1))`` over MiniLM's 6 blocks). The visual stream, co-attention width,
pooler width and heads are the same in both arms.

The comparison (``compare``, ``main``) is like for like: the same scenes, items and regions
(each arm tokenizes the texts with its own tokenizer), the same fine-tuning schedule, no
multi-modal pretraining in either arm (the cached pretrainings are of minivl's BERT and its
vocabulary only), and the text stream frozen in both (``finetune(freeze_text=True)``): only
co-attention, the visual stream, the poolers and the task head train. Frozen, because MiniLM is
22.7M parameters (11.7M of them the word embeddings) where the whole minivl ViLBERT is 0.37M,
and one fine-tuning step through it costs about 10x minivl's (0.5 s against 0.045 s, VQA, batch
32, numba, one thread at load ~3). The arm ``minivl_trained`` (minivl's BERT, text stream
trained too, as the transfer table's ``vilbert_no_pretraining``) shows what freezing costs minivl;
the arm ``minilm_random`` (MiniLM's architecture and tokenizer, its frozen text weights at
initialisation) shows what MiniLM's size alone brings: at MiniLM's width the co-attention layers
train 2.9M parameters against minivl's 0.24M.
Because of that cost the schedule is ``SCHEDULE`` (``vilbert_table``) scaled by ``fraction``
(default one half) for every arm.

    python -m minivl.recipes.vilbert_text_init --out results/vilbert_text_init.json

writes every run's val and test metrics, parameter counts (all and trainable), times, the
machine's load average, the date and the command; the file is rewritten after every run.
Parts run apart (seeds, arms) are joined with ``--merge A.json B.json ... --out C.json``.
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
# The co-attention placement the comparison runs at (over minivl's 2 text blocks; see the module
# docstring): the one results/vilbert_text_init.json was measured at, so its command reproduces it.
PLACEMENT = ((1, 0), (2, 1))
# arm -> (text init, text stream frozen, pretrained text weights). "minilm_random" is the control
# of the MiniLM arm: the same architecture, tokenizer and trainable parts (co-attention at MiniLM's
# width has 12x the trainable parameters of minivl's), the frozen text weights at their
# initialisation instead of MiniLM's, so what MiniLM's pretraining brings is told apart from
# what its size brings.
ARMS = {"minivl": ("minivl", True, True), "minivl_trained": ("minivl", False, True),
        "minilm": ("minilm", True, True), "minilm_random": ("minilm", True, False)}
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
            log=print, only=None, co_attention_at=PLACEMENT) -> dict:
    """Fine-tune ViLBERT with each arm's text stream on each task for each seed (see the module
    docstring); the runs in the order seed, arm, task. ``sizes``: (train, val, test) scenes of
    every task (None: the table's ``task_sizes``). ``only``: the (seed, arm) pairs to run (None:
    every one). Returns (and with ``out`` writes after every
    run) the table."""
    from minivl import backend
    from minivl.data.regions import RegionEncoder
    from minivl.data.vilbert_tasks import make_task, scene_parts
    from minivl.data.world import ShapesWorld
    from minivl.models.bert import BERT
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
             "tasks": list(tasks), "seeds": list(seeds),
             "arms": {a: {"text_init": ARMS[a][0], "text_frozen": ARMS[a][1], "text_pretrained": ARMS[a][2]}
                      for a in arms},
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
            if only is not None and (seed, arm) not in only:
                continue
            init, frozen, pretrained = ARMS[arm]
            bert, tok = streams[init]
            for task in tasks:
                manual_seed(seed)  # the visual stream's and co-attention's initialisation
                encoder = fresh_vilbert(bert if pretrained else BERT(bert.config), tok, regions, co_attention_at)
                steps, batch_size = schedule[task]
                load = os.getloadavg()
                run = finetune(task, encoder, data[init][task], steps=steps, batch_size=batch_size, lr=lr,
                               head_lr=head_lr, seed=seed, progress=progress, desc=f"{task} {arm} s{seed}",
                               freeze_text=frozen)
                m = run["metrics"]
                record = {"task": task, "arm": arm, "text_init": init, "text_frozen": frozen,
                          "text_pretrained": pretrained, "seed": seed,
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


def write(table: dict, path) -> None:
    """The table as JSON (``vilbert_table.write``: the same format as the transfer table's files)."""
    from minivl.recipes.vilbert_table import write as write_table

    write_table(table, path)


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


def merge(paths, out, command: str = "") -> dict:
    """One table from several ``compare`` files (parts run apart: seeds, arms): every run, each
    part's command, date, load averages and settings kept under ``parts``."""
    tables = [json.loads(Path(p).read_text()) for p in paths]
    for t in tables[1:]:
        for key in ("schedule", "lr", "head_lr", "sizes_scenes"):
            for task in set(t["tasks"]) & set(tables[0]["tasks"]):
                a, b = (x[key][task] if isinstance(x[key], dict) else x[key] for x in (tables[0], t))
                if a != b:
                    raise ValueError(f"merge: {key} differs for {task}: {a} vs {b}")
    runs = [{"text_pretrained": ARMS[r["arm"]][2], **r} for t in tables for r in t["runs"]]
    table = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "merged": [str(p) for p in paths],
             "parts": [{k: v for k, v in t.items() if k not in ("runs", "summary")} for t in tables],
             "tasks": sorted({r["task"] for r in runs}, key=lambda x: [r["task"] for r in runs].index(x)),
             "seeds": sorted({r["seed"] for r in runs}),
             "arms": {a: {"text_init": ARMS[a][0], "text_frozen": ARMS[a][1], "text_pretrained": ARMS[a][2]}
                      for a in dict.fromkeys(r["arm"] for r in runs)},
             "runs": runs}
    table["summary"] = summary(table)
    write(table, out)
    return table


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
    parser.add_argument("--only", nargs="+", default=None, metavar="SEED:ARM",
                        help="run only these (seed, arm) pairs of --seeds x --arms, in that loop's order")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="merge these compare files into --out instead of running")
    args = parser.parse_args(argv)
    command = "python -m minivl.recipes.vilbert_text_init " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.merge:
        merge(args.merge, args.out, command)
        print(f"results: {args.out}")
        return
    import minivl

    if not os.environ.get("MINIVL_BACKEND"):
        minivl.use("numba")  # as minivl vilbert finetune does (commands/vilbert.py::choose_backend)
    only = None if args.only is None else {(int(p.split(":")[0]), p.split(":")[1]) for p in args.only}
    compare(args.tasks, args.seeds, args.arms, args.fraction, args.lr, args.head_lr, args.scenes, args.progress,
            args.out, command, only=only)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
