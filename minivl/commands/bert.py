"""``minivl bert train`` / ``minivl bert fill``: pretrain a tiny BERT by masked
language modelling on the caption corpus (lecture S01), then fill in blanks.

``train_bert`` is the recipe the command, the notebook and ``minivl tour``
share: build the corpus and its BPE tokenizer, mask 15% of the tokens of each
batch afresh (80/10/10), train with the MLM cross-entropy, and measure MLM
accuracy on a fixed masked validation set before and after training.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from minivl import functional as F
from minivl.commands._options import add_training_options
from minivl.data.corpus import TextCorpus, build_corpus, collate_pairs, pair_batches, sentence_pairs
from minivl.distributed import data_parallel_for, is_main
from minivl.models.bert import BERT, mask_tokens, mlm_accuracy, mlm_loss
from minivl.models.checkpoint import load_checkpoint, save_checkpoint
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import no_grad
from minivl.tokenizers import BPETokenizer
from minivl.train import History, run_eval, train

NEVER_MASKED = ("[CLS]", "[SEP]", "[PAD]")


def masked_batch(batch: dict, corpus: TextCorpus, rng: np.random.Generator) -> dict:
    """``batch`` with BERT's corruption applied: ``inputs`` and ``labels`` added."""
    inputs, labels = mask_tokens(batch["ids"], [corpus.special(s) for s in NEVER_MASKED],
                                 corpus.vocab_size, corpus.special("[MASK]"), rng)
    return {**batch, "inputs": inputs, "labels": labels}


def mlm_step(model: BERT, batch: dict):
    """The MLM loss of one masked batch (and its accuracy, for the progress bar)."""
    logits = model.mlm_logits(batch["inputs"], batch["segment_ids"], batch["key_padding_mask"])
    return mlm_loss(logits, batch["labels"]), {"mlm_accuracy": mlm_accuracy(logits, batch["labels"])}


def evaluate_mlm(model: BERT, batch: dict) -> dict:
    """MLM loss and accuracy on one fixed masked batch."""
    with no_grad():
        loss, metrics = mlm_step(model, batch)
    return {"mlm_loss": float(loss.item()), **metrics}


def fill_mask(model: BERT, tokenizer: BPETokenizer, text: str, text_b: str | None = None,
              top: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top`` most likely tokens (and probabilities) for each [MASK].

    ``text`` is segment A, ``text_b`` (optional) segment B, as in pretraining:
    ``fill_mask(m, tok, "a big blue ring.", "one [MASK] in the image.")``
    -> ``[[(" ring", 0.6), ...]]``. A blank stands for one token; the words
    were learned with their leading space (" ring"), so the space before each
    [MASK] belongs to it.
    """
    special = tokenizer.special_tokens
    ids, segments = [special["[CLS]"]], [0]
    for segment, sentence in enumerate([text] if text_b is None else [text, " " + text_b]):
        pieces = sentence.split("[MASK]")
        part = []
        for piece in pieces[:-1]:
            part += tokenizer.encode(piece.removesuffix(" ")) + [special["[MASK]"]]
        part += tokenizer.encode(pieces[-1]) + [special["[SEP]"]]
        ids, segments = ids + part, segments + [segment] * len(part)
    ids, segments = np.asarray([ids]), np.asarray([segments])
    if not (ids == special["[MASK]"]).any():
        raise ValueError(f"fill_mask: no [MASK] in {text!r} / {text_b!r}")
    was_training = model.training
    model.eval()
    with no_grad():
        probs = F.softmax(model.mlm_logits(ids, segments), axis=-1).data[0]  # (N, V)
    model.train(was_training)
    out = []
    for position in np.flatnonzero(ids[0] == special["[MASK]"]):
        best = np.argsort(-probs[position])[:top]
        out.append([(tokenizer.decode([int(i)]), float(probs[position, i])) for i in best])
    return out


def train_bert(corpus: TextCorpus | None = None, steps: int = 600, batch_size: int = 64,
               dim: int = 64, depth: int = 2, num_heads: int = 4, lr: float = 4e-3,
               warmup: int = 20, dropout: float = 0.1, eval_every: int = 50, seed: int = 0,
               progress: bool = True, out: str | Path | None = None, distributed: bool = False) -> dict:
    """Train a BERT by masked language modelling on the caption corpus.

    Returns ``{"model", "corpus", "history", "metrics"}``; ``metrics`` holds
    the validation MLM accuracy and loss at step 0 and at the end, and the
    training time. With ``out``, writes ``bert.safetensors`` and
    ``tokenizer.json`` there.
    """
    manual_seed(seed)
    corpus = corpus or build_corpus(seed=seed)
    pad = corpus.special("[PAD]")
    train_pairs = sentence_pairs(corpus.train, corpus.tokenizer)
    val_pairs = sentence_pairs(corpus.val, corpus.tokenizer)
    max_len = max(64, *(len(ids) for ids in train_pairs["ids"] + val_pairs["ids"]))
    model = BERT(vocab_size=corpus.vocab_size, max_len=max_len, dim=dim, depth=depth,
                 num_heads=num_heads, dropout=dropout)
    # One fixed corruption of the validation pairs, so every evaluation asks the same questions.
    val_batch = masked_batch(collate_pairs(val_pairs, pad), corpus, np.random.default_rng(seed + 1))
    evaluate = lambda: evaluate_mlm(model, val_batch)
    start = {"step": 0, **run_eval(model, evaluate)}

    mask_rng = np.random.default_rng(seed + 2)
    batches = (masked_batch(b, corpus, mask_rng)
               for b in pair_batches(train_pairs, batch_size, pad, seed))
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = WarmupCosineLR(optimizer, steps, min(warmup, steps), min_lr=lr / 10)
    dp = data_parallel_for(model, distributed, dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                                    dim=dim, depth=depth))
    history: History = train(model, mlm_step, batches, optimizer, steps, scheduler,
                             evaluate=evaluate, eval_every=eval_every, progress=progress, desc="bert",
                             data_parallel=dp)
    history.evals.insert(0, start)
    end = history.last_eval()
    metrics = {
        "mlm_accuracy_start": start["mlm_accuracy"], "mlm_accuracy": end["mlm_accuracy"],
        "mlm_loss_start": start["mlm_loss"], "mlm_loss": end["mlm_loss"],
        "train_seconds": history.seconds, "steps": steps, "parameters": model.num_parameters(),
        "tokenizer": f"byte-level BPE, {corpus.vocab_size} ids",
    }
    if out is not None and is_main(dp):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, out / "bert.safetensors", steps=steps)
        corpus.tokenizer.save(out / "tokenizer.json")
    return {"model": model, "corpus": corpus, "history": history, "metrics": metrics}


# --------------------------------------------------------------------------- command line

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
                        out=args.out, progress=not args.quiet, distributed=args.distributed)
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
