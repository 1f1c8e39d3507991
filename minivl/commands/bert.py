"""``minivl bert train`` / ``minivl bert fill``: the command line over
``minivl.recipes.bert`` (lecture S01)."""

from __future__ import annotations

import time
from pathlib import Path

from minivl.checkpoint import load_checkpoint
from minivl.commands._options import add_training_options
from minivl.models.bert import BERT
from minivl.recipes.bert import fill_mask, train_bert
from minivl.tokenizers import BPETokenizer

# (segment A, segment B): the blanks in B can be read off A.
EXAMPLES = (("a red [MASK] is to the left of a blue square.", None),
            ("a large yellow diamond.", "one [MASK] in the image."),
            ("a big blue ring and a small red cross.", "a [MASK] red cross is below a blue ring."))


def _print_fills(model, tokenizer, examples):
    for text, text_b in examples:
        guesses = fill_mask(model, tokenizer, text, text_b)
        shown = "; ".join(", ".join(f"{t!r} {p:.2f}" for t, p in g[:3]) for g in guesses)
        print(f"  {text!r} / {text_b!r}: {shown}" if text_b else f"  {text!r}: {shown}")


def _train(args):
    began = time.perf_counter()
    result = train_bert(steps=args.steps, batch_size=args.batch_size, dim=args.dim,
                        depth=args.depth, num_heads=args.heads, lr=args.lr, seed=args.seed,
                        out=args.out, progress=not args.quiet, distributed=args.distributed, resume=args.resume)
    m = result["metrics"]
    print(f"BERT, {m['parameters']:,} parameters, {m['tokenizer']}, {m['steps']} steps "
          f"in {m['train_seconds']:.0f} s")
    print(f"validation MLM accuracy: {m['mlm_accuracy_start']:.3f} at step 0 -> "
          f"{m['mlm_accuracy']:.3f} (loss {m['mlm_loss_start']:.2f} -> {m['mlm_loss']:.2f})")
    print("fill in the blank (top 3):")
    _print_fills(result["model"], result["corpus"].tokenizer, EXAMPLES)
    print(f"checkpoint: {Path(args.out) / 'bert.safetensors'} ({time.perf_counter() - began:.0f} s in all)")
    return 0


def _fill(args):
    folder = Path(args.checkpoint)
    model = load_checkpoint(BERT, folder / "bert.safetensors")
    examples = [(args.text[0], args.text[1] if len(args.text) > 1 else None)] if args.text else EXAMPLES
    _print_fills(model, BPETokenizer.load(folder / "tokenizer.json"), examples)
    return 0


def register(subparsers):
    p = subparsers.add_parser("bert", help="BERT: masked-LM pretraining on captions, fill-in (S01)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a tiny BERT (a couple of minutes on 2 cores)")
    add_training_options(t, steps=600, batch_size=64, lr=4e-3, depth=2, out="runs/bert",
                         out_help="folder for bert.safetensors + tokenizer.json")
    t.set_defaults(func=_train)
    f = sub.add_parser("fill", help="predict the [MASK] words of sentences with a trained BERT")
    f.add_argument("text", nargs="*", help="one or two sentences (segments A and B) with [MASK]s "
                   "(default: a few examples)")
    f.add_argument("--checkpoint", default="runs/bert", help="folder written by 'minivl bert train'")
    f.set_defaults(func=_fill)
