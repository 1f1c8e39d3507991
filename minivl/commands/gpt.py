"""``minivl gpt train`` / ``minivl gpt sample``: the command line over
``minivl.recipes.gpt`` (lecture S01)."""

from __future__ import annotations

import time
from pathlib import Path

from minivl.checkpoint import load_checkpoint
from minivl.commands._options import add_training_options
from minivl.models.gpt import GPT
from minivl.recipes.gpt import samples, train_gpt
from minivl.tokenizers import BPETokenizer


def _train(args):
    began = time.perf_counter()
    result = train_gpt(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
                       dim=args.dim, depth=args.depth, num_heads=args.heads, lr=args.lr,
                       seed=args.seed, out=args.out, progress=not args.quiet, distributed=args.distributed,
                       resume=args.resume)
    m = result["metrics"]
    print(f"GPT, {m['parameters']:,} parameters, {m['tokenizer']}, {m['steps']} steps "
          f"in {m['train_seconds']:.0f} s")
    print(f"validation perplexity: {m['val_perplexity_start']:.1f} at step 0 -> "
          f"{m['val_perplexity']:.2f}")
    for title, texts in (("step 0", result["samples_start"]), (f"step {m['steps']}", result["samples_end"])):
        print(f"\nsamples at {title}:")
        for t in texts:
            print(f"  {t!r}")
    print(f"\ncheckpoint: {Path(args.out) / 'gpt.safetensors'} ({time.perf_counter() - began:.0f} s in all)")
    return 0


def _sample(args):
    folder = Path(args.checkpoint)
    model = load_checkpoint(GPT, folder / "gpt.safetensors")
    tokenizer = BPETokenizer.load(folder / "tokenizer.json")
    for t in samples(model, tokenizer, [args.prompt], n=args.n, max_new_tokens=args.max_new_tokens,
                     temperature=args.temperature, top_k=args.top_k, seed=args.seed):
        print(repr(t))
    return 0


def register(subparsers):
    p = subparsers.add_parser("gpt", help="GPT: next-token pretraining on captions, sampling (S01)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a tiny GPT (a couple of minutes on 2 cores)")
    add_training_options(t, steps=300, batch_size=32, lr=3e-3, depth=2, out="runs/gpt",
                         out_help="folder for gpt.safetensors + tokenizer.json")
    t.add_argument("--block-size", type=int, default=48)
    t.set_defaults(func=_train)
    s = sub.add_parser("sample", help="continue a prompt with a trained GPT")
    s.add_argument("--checkpoint", default="runs/gpt", help="folder written by 'minivl gpt train'")
    s.add_argument("--prompt", default="")
    s.add_argument("-n", type=int, default=5)
    s.add_argument("--max-new-tokens", type=int, default=40)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_sample)
