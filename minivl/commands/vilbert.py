"""``minivl vilbert pretrain`` / ``minivl vilbert finetune``: the command line over
``minivl.recipes.vilbert`` (S07-S09) and ``minivl.recipes.vilbert_transfer`` (S10)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from minivl.commands._options import write_results
from minivl.models.vilbert import MODELS

CHECKPOINT = "runs/vilbert"


def _encoder(detector):
    """The RegionEncoder of a saved detector, or of the default one."""
    from minivl.checkpoint import load_checkpoint
    from minivl.data.regions import RegionEncoder
    from minivl.models.detector import Detector

    return RegionEncoder(load_checkpoint(Detector, detector).eval()) if detector else RegionEncoder.load_default()


def _regions(detector):
    """The region function of a saved detector, or None (the recipe's default)."""
    if detector is None:
        return None
    encoder = _encoder(detector)
    return lambda scenes, rng: encoder.encode_scenes(scenes, rng=rng)


def _one_pretraining(kind, seed, args):
    """One (kind, seed) run and its record (a process of its own under --workers)."""
    from minivl.recipes.vilbert import parse_mask_rates, parse_pairs, pretrain_vilbert

    load = os.getloadavg()
    out = Path(args.out) / f"seed{seed}" if len(args.seeds) > 1 else Path(args.out)
    config = None
    if getattr(args, "co_attention_at", None):
        from minivl.models.vilbert import ViLBERTConfig

        config = ViLBERTConfig(co_attention_at=parse_pairs(args.co_attention_at))
    r = pretrain_vilbert(kind, steps=args.steps, config=config, batch_size=args.batch_size, lr=args.lr, seed=seed,
                         n_train=args.n_train, n_val=args.n_val, eval_every=args.eval_every,
                         regions=_regions(args.detector), progress=not args.quiet and args.workers == 1, out=out,
                         weights=None if args.alignment_weight is None else {"alignment": args.alignment_weight},
                         hard_negatives=args.hard_negatives,
                         word_mask_rates=None if args.mask_rates is None else parse_mask_rates(args.mask_rates))
    m, h = r["metrics"], r["metrics"]["held_out"]
    print(f"{kind} seed {seed}: {m['parameters']:,} parameters, {m['steps']} steps in "
          f"{m['train_seconds']:.0f} s (load average {load[0]:.1f}); held-out alignment "
          f"{h['alignment_accuracy']:.3f} ({h['alignment_accuracy_clean']:.3f} unmasked, "
          f"{h['alignment_accuracy_hard']:.3f} with hard negatives), masked words "
          f"{h['masked_word_accuracy']:.3f}, masked regions {h['masked_region_accuracy']:.3f} "
          f"(detector's top class {h['masked_region_agreement']:.3f})", flush=True)
    every = max(1, args.steps // 100)
    curves = {name: [float(np.mean(v[i:i + every])) for i in range(0, len(v), every)]
              for name, v in r["terms"].items()}
    return {**m, "seed": seed, "load_average_before": load[0], "load_average_after": os.getloadavg()[0],
            "evals": r["history"].evals, "loss_curves": {"every": every, **curves},
            "checkpoint": str(out / f"{kind}.safetensors")}


def choose_backend(args) -> str:
    """The kernel backend a pretraining or fine-tuning runs on: the global ``--backend`` or
    $MINIVL_BACKEND when either is given, else numba, the same math as NumPy, faster: the
    budgets ``PRETRAIN_STEPS`` and the table's ``SCHEDULE`` are sized on it (6,000 pretraining
    steps take 424-485 s on numba, about twice that on NumPy)."""
    import minivl
    from minivl import backend

    if not getattr(args, "backend", None) and not os.environ.get("MINIVL_BACKEND"):
        minivl.use("numba")
    return backend.current()


def _pretrain(args):
    args.backend = choose_backend(args)
    jobs = [(kind, seed) for kind in args.kinds for seed in args.seeds]
    if args.workers > 1:  # separate processes: on a shared machine each gets its own share of the cores
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers) as pool:
            runs = list(pool.map(_one_pretraining, *zip(*jobs), [args] * len(jobs)))
    else:
        runs = [_one_pretraining(kind, seed, args) for kind, seed in jobs]
    if args.results:
        env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
        print(f"results: {write_results(args.results, 'vilbert pretrain', vars(args), {'runs': runs, 'env': env})}")
    return 0


def _finetune(args):
    try:
        from minivl.recipes.vilbert_transfer import finetune
    except ImportError:  # the transfer recipe is not there yet
        print("minivl vilbert finetune needs minivl/recipes/vilbert_transfer.py")
        return 1
    from minivl.checkpoint import load_checkpoint
    from minivl.data.vilbert_tasks import make_task
    from minivl.data.world import ShapesWorld
    from minivl.tokenizers import BPETokenizer

    args.backend = choose_backend(args)
    began = time.perf_counter()
    if args.text_init:  # no multi-modal pretraining: a fresh ViLBERT, text stream from that BERT
        from minivl.recipes.vilbert_text_init import fresh_vilbert, text_stream

        if args.kind != "vilbert":
            print(f"--text-init builds a ViLBERT, not a {args.kind}")
            return 1
        try:
            bert, tokenizer = text_stream(args.text_init)
        except ImportError as err:  # the MiniLM checkpoint without the pretrained extra
            print(err)
            return 1
        regions = _encoder(args.detector)
        encoder = fresh_vilbert(bert, tokenizer, regions)
        folder = f"{args.text_init}'s BERT (no multi-modal pretraining)"
    else:
        folder = Path(args.checkpoint)
        encoder = load_checkpoint(MODELS[args.kind], folder / f"{args.kind}.safetensors")
        tokenizer = BPETokenizer.load(folder / "tokenizer.json")
        regions = _encoder(args.detector)
    world = ShapesWorld(image_size=regions.image_size, seed=args.seed)
    from minivl.recipes.vilbert_table import SCHEDULE, task_sizes

    sizes = task_sizes(args.task)
    data = make_task(args.task, world, tokenizer, regions, sizes=(args.n_train or sizes[0], *sizes[1:]),
                     seed=args.seed, max_len=encoder.config.max_len)

    steps, batch_size = SCHEDULE[args.task]
    r = finetune(args.task, encoder, data, steps=args.steps or steps, batch_size=args.batch_size or batch_size,
                 lr=args.lr, seed=args.seed, progress=not args.quiet, freeze_text=args.freeze_text)
    print(f"{args.task} with {args.kind} from {folder}: test {r['metrics'].get('test')} "
          f"({time.perf_counter() - began:.0f} s in all)")
    if args.results:
        print(f"results: {write_results(args.results, 'vilbert finetune', vars(args), r['metrics'])}")
    return 0


def register(subparsers):
    from minivl.recipes.vilbert import HARD_SHARE, PRETRAIN_STEPS

    p = subparsers.add_parser("vilbert", help="ViLBERT: two streams, co-attention, pretraining, transfer (S03-S11)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("pretrain", help="masked multi-modal modelling + alignment on captioned scenes")
    t.add_argument("--kinds", nargs="+", choices=sorted(MODELS), default=["vilbert"],
                   help="models to pretrain (baselines get ViLBERT's parameter count)")
    t.add_argument("--steps", type=int, default=PRETRAIN_STEPS,
                   help="default: PRETRAIN_STEPS, sized for 10 minutes on numba (the default backend here; "
                        "minivl --backend numpy vilbert pretrain runs the reference kernels)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--alignment-weight", type=float, default=None,
                   help="weight of the alignment term (default: TERM_WEIGHTS, 5; the masked terms weigh 1)")
    t.add_argument("--hard-negatives", type=float, default=HARD_SHARE,
                   help="share of alignment negatives that swap one size or relation word of the true caption "
                        "(default HARD_SHARE; 0: random captions only, the paper's recipe)")
    t.add_argument("--mask-rates", nargs="*", metavar="KIND=RATE", default=None,
                   help="masking rate of the words of a kind (size, relation, colour, shape), e.g. size=0.5; "
                        "with no value, 15%% for every word (default: WORD_MASK_RATES)")
    t.add_argument("--n-train", type=int, default=4000, help="training scenes (two captions each)")
    t.add_argument("--n-val", type=int, default=500, help="held-out scenes")
    t.add_argument("--co-attention-at", nargs="+", metavar="T,V", default=None,
                   help="where the co-attention layers sit: (text block, visual block) pairs, e.g. 1,0 1,1 "
                        "(default: ViLBERTConfig's co_attention_at)")
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--detector", default=None, help="a saved Detector (default: RegionEncoder.load_default)")
    t.add_argument("--out", default=CHECKPOINT, help="folder for <kind>.safetensors + tokenizer.json")
    t.add_argument("--results", default=None, help="write the metrics and loss curves as JSON here")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--workers", type=int, default=1, help="runs at once, one process each")
    t.set_defaults(func=_pretrain)
    f = sub.add_parser("finetune", help="fine-tune a pretrained model on one transfer task (S10)")
    f.add_argument("--task", required=True, choices=("vqa", "refexp", "retrieval", "vcr", "nlvr", "foil"))
    f.add_argument("--kind", choices=sorted(MODELS), default="vilbert")
    f.add_argument("--checkpoint", default=CHECKPOINT, help="a folder written by 'vilbert pretrain'")
    f.add_argument("--text-init", choices=("minivl", "minilm"), default=None,
                   help="instead of --checkpoint: a ViLBERT without multi-modal pretraining, text stream from "
                        "minivl's BERT or from all-MiniLM-L6-v2 (pip install minivl[pretrained]; "
                        "minivl/recipes/vilbert_text_init.py)")
    f.add_argument("--freeze-text", action="store_true",
                   help="keep the text embeddings and blocks as loaded (co-attention, visual stream and head train)")
    f.add_argument("--steps", type=int, default=None, help="default: the table's SCHEDULE for the task")
    f.add_argument("--batch-size", type=int, default=None, help="default: the table's SCHEDULE for the task")
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--n-train", type=int, default=None, help="training scenes (default: the table's TRAIN_SCENES)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--detector", default=None, help="a saved Detector (default: RegionEncoder.load_default)")
    f.add_argument("--results", default=None, help="write the metrics as JSON here")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=_finetune)
