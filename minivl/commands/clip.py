"""``minivl clip train`` / ``minivl clip shift``: the command line over
``minivl.recipes.clip`` (lecture S12-S17) and ``minivl.recipes.clip_shift`` (S17)."""

from __future__ import annotations

from pathlib import Path

from minivl.commands._options import add_training_options, write_results
from minivl.recipes.clip import CHECKPOINT, LAYOUTS, TASKS, train_clip


def _train(args):
    r = train_clip(task=args.task, steps=args.steps, batch_size=args.batch_size,
                   chunk_size=args.chunk_size, lr=args.lr, dim=args.dim, depth=args.depth,
                   heads=args.heads, n_train=args.n_train, eval_every=args.eval_every, seed=args.seed,
                   progress=not args.quiet, out=args.out, resume=args.resume, layout=args.layout,
                   twins=args.twins, distributed=args.distributed, local_loss=args.local_loss)
    m = r["metrics"]
    print(f"CLIP on {m['task']}: {m['parameters']:,} parameters, {m['train_pairs']:,} pairs, "
          f"{m['steps']} steps of {m['batch_size']} in {m['train_seconds']:.0f} s; "
          f"exp(t) = {m['logit_scale']:.1f}")
    if m["task"] == "shapes":
        print(f"zero-shot top-1, held-out pairs, unseen prompt templates: {m['held_out_top1']:.1%} "
              f"(training templates: {m['held_out_top1_train_templates']:.1%}; "
              f"seen pairs: {m['seen_top1']:.1%})")
        print("retrieval, 1,000 scenes absent from training: "
              + ", ".join(f"{k} {v:.1%}" for k, v in m.items() if "R@" in k))
    else:
        print(f"digits classified by text labels (classes seen in training, unseen templates): "
              f"{m['text_label_top1']:.1%}")
    if args.results:
        print(f"results: {write_results(args.results, 'clip train', vars(args), m)}")
    if args.out:
        print(f"checkpoint: {Path(args.out) / CHECKPOINT}")
    return 0


def _shift(args):
    from minivl.recipes.clip_shift import shift_experiment

    r = shift_experiment(args.checkpoint, n_test=args.n_test, vit_steps=args.vit_steps,
                         seed=args.seed, progress=not args.quiet, plot=args.plot)
    for name, row in r["accuracy"].items():
        print(f"{name:>16}: " + ", ".join(f"{k} {v:.1%}" for k, v in row.items()))
    if args.results:
        print(f"results: {write_results(args.results, 'clip shift', vars(args), r)}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("clip", help="CLIP: contrastive image-text pretraining, zero-shot (S12-S17)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a tiny CLIP (a few minutes on 2 cores)")
    t.add_argument("--task", choices=TASKS, default="shapes")
    add_training_options(t, steps=None, batch_size=None, lr=2e-3, depth=2, out="runs/clip",
                         out_help="folder for clip.safetensors", steps_help="default: 3000 (shapes), 300 (digits)",
                         batch_help="default: 128 (shapes), 64 (digits)")
    t.add_argument("--chunk-size", type=int, default=None, help="gradient caching: chunks of this many pairs")
    t.add_argument("--n-train", type=int, default=40000, help="training pairs (shapes)")
    t.add_argument("--layout", choices=LAYOUTS, default="grid",
                   help="shapes: objects in a 3x3 grid of patch-sized cells (48 px), or anywhere (32 px)")
    t.add_argument("--no-twins", dest="twins", action="store_false",
                   help="shapes: no one-word-different twin beside each multi-object scene")
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--local-loss", action="store_true", help="with --distributed: n x N logits per rank")
    t.add_argument("--results", default=None, help="write the metrics as JSON here")
    t.set_defaults(func=_train)
    s = sub.add_parser("shift", help="S17: supervised ViT vs zero-shot CLIP under distribution shift")
    s.add_argument("--checkpoint", default=f"runs/clip/{CHECKPOINT}", help="a shapes run of 'clip train'")
    s.add_argument("--n-test", type=int, default=600, help="test images per distribution")
    s.add_argument("--vit-steps", type=int, default=1500,
                   help="ViT training steps (1,500 bring it to the accuracy CLIP has on the training renders)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--results", default=None, help="write the accuracies as JSON here")
    s.add_argument("--plot", default=None, help="write the bar chart (PNG) here")
    s.set_defaults(func=_shift)
