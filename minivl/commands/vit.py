"""``minivl vit train``: the command line over ``minivl.recipes.vit`` (lecture
S01): train a ViT, report its accuracy, draw its attention rollout."""

from __future__ import annotations

import time
from pathlib import Path

from minivl.commands._options import add_training_options
from minivl.recipes.vit import STEPS, TASKS, train_vit


def _train(args):
    began = time.perf_counter()
    result = train_vit(args.task, steps=args.steps, batch_size=args.batch_size, dim=args.dim,
                       depth=args.depth, num_heads=args.heads, lr=args.lr, seed=args.seed,
                       out=args.out, progress=not args.quiet, distributed=args.distributed, resume=args.resume)
    m, task = result["metrics"], result["task"]
    print(f"ViT on {m['task']}: {m['parameters']:,} parameters, {task.image_size}x{task.image_size} "
          f"images, patch {task.patch_size} -> {(task.image_size // task.patch_size) ** 2} tokens + [CLS]")
    print(f"{m['steps']} steps in {m['train_seconds']:.0f} s on {m['train_size']} images")
    print(f"test accuracy: {m['test_accuracy_start']:.3f} at step 0 -> {m['test_accuracy']:.3f} "
          f"({m['test_size']} images); train accuracy {m['train_accuracy']:.3f}")
    stem = Path(args.out) / f"vit-{task.name}"
    if not args.no_plots and result["main"]:  # with --distributed, rank 0 draws
        from minivl.viz.attention import attention_rollout_figure

        fig = attention_rollout_figure(result["model"], task.test_images[:8],
                                       [task.class_names[i] for i in task.test_labels[:8]])
        fig.savefig(f"{stem}-rollout.png", dpi=100)
        print(f"attention rollout: {stem}-rollout.png")
    print(f"checkpoint: {stem}.safetensors ({time.perf_counter() - began:.0f} s in all)")
    return 0


def register(subparsers):
    p = subparsers.add_parser("vit", help="ViT: image classification on digits or shapes (S01)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a tiny ViT (a few minutes on 2 cores)")
    t.add_argument("--task", choices=sorted(TASKS), default="digits")
    add_training_options(t, steps=None, batch_size=128, lr=3e-3, depth=4, out="runs/vit",
                         out_help="folder for the checkpoint and the plot",
                         steps_help=f"default per task: {', '.join(f'{k} {v}' for k, v in STEPS.items())}")
    t.add_argument("--no-plots", action="store_true", help="skip the attention-rollout PNG")
    t.set_defaults(func=_train)
