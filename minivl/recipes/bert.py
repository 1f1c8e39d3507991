"""How a tiny BERT is pretrained by masked language modelling on the caption
corpus, and asked to fill in blanks (lecture S01; Devlin et al. 2019).

``train_bert`` is the recipe ``minivl bert train``, the notebook and ``minivl
tour`` share: build the corpus and its BPE tokenizer, mask 15% of the tokens
of each batch afresh (80/10/10), train with the MLM cross-entropy, and
measure MLM accuracy on a fixed masked validation set before and after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minivl import functional as F
from minivl.checkpoint import load_training_state, save_training_state, skip
from minivl.data.corpus import TextCorpus, build_corpus, collate_pairs, pair_batches, sentence_pairs
from minivl.distributed import data_parallel_for, is_main
from minivl.models.bert import BERT, mask_tokens, mlm_accuracy, mlm_loss
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
               progress: bool = True, out: str | Path | None = None, resume=None, stop_after=None,
               distributed: bool = False) -> dict:
    """Train a BERT by masked language modelling on the caption corpus.

    Returns ``{"model", "corpus", "history", "metrics"}``; ``metrics`` holds
    the validation MLM accuracy and loss at step 0 and at the end, and the
    training time. With ``out``, writes ``bert.safetensors`` and
    ``tokenizer.json`` there. The file is a training state
    (``minivl.checkpoint``): ``resume`` names one and continues to ``steps`` as
    if never stopped; ``stop_after`` ends this session early.
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
    begin = load_training_state(resume, model, optimizer, scheduler) if resume else 0
    end = min(steps, stop_after or steps)
    dp = data_parallel_for(model, distributed, dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                                    dim=dim, depth=depth))
    history: History = train(model, mlm_step, skip(batches, begin), optimizer, end - begin, scheduler,
                             evaluate=evaluate, eval_every=eval_every, progress=progress, desc="bert",
                             data_parallel=dp)
    history.after(begin, start)
    final = history.last_eval()
    metrics = {
        "mlm_accuracy_start": start["mlm_accuracy"], "mlm_accuracy": final["mlm_accuracy"],
        "mlm_loss_start": start["mlm_loss"], "mlm_loss": final["mlm_loss"],
        "train_seconds": history.seconds, "steps": end, "parameters": model.num_parameters(),
        "tokenizer": f"byte-level BPE, {corpus.vocab_size} ids",
    }
    if out is not None and is_main(dp):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_training_state(out / "bert.safetensors", model, optimizer, scheduler, end)
        corpus.tokenizer.save(out / "tokenizer.json")
    return {"model": model, "corpus": corpus, "history": history, "metrics": metrics}
