"""How a tiny GPT is pretrained on the caption corpus and sampled from (lecture S01;
Radford et al. 2018/2019).

``train_gpt`` is the recipe ``minivl gpt train``, the notebook and ``minivl tour``
share: build the corpus and its BPE tokenizer, train with next-token
cross-entropy (AdamW, warm-up + cosine), and measure validation perplexity
and samples before and after training.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from minivl.checkpoint import load_training_state, save_training_state, skip
from minivl.data.corpus import TextCorpus, build_corpus, lm_batches, lm_stream
from minivl.distributed import data_parallel_for, is_main
from minivl.models.gpt import GPT
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import no_grad
from minivl.tokenizers import BPETokenizer
from minivl.train import History, run_eval, train


def val_windows(corpus: TextCorpus, block_size: int, max_windows: int = 32) -> np.ndarray:
    """Non-overlapping ``(W, block_size + 1)`` windows of the validation stream."""
    stream = lm_stream(corpus.val, corpus.tokenizer)
    n = min(max_windows, (len(stream) - 1) // block_size)
    if n < 1:
        raise ValueError(f"the validation stream ({len(stream)} tokens) is shorter than one block")
    return np.stack([stream[i * block_size: i * block_size + block_size + 1] for i in range(n)])


def perplexity(model: GPT, windows: np.ndarray) -> dict:
    """Mean next-token loss on ``windows`` and its exponential, the perplexity."""
    with no_grad():
        loss = float(model.loss(windows).item())
    return {"val_loss": loss, "val_perplexity": math.exp(loss)}


def samples(model: GPT, tokenizer: BPETokenizer, prompts=("",), n: int = 3, max_new_tokens: int = 40,
            temperature: float = 0.8, top_k: int | None = None, seed: int = 0) -> list[str]:
    """``n`` seeded continuations of each prompt, cut at the first <|endoftext|>.

    An empty prompt starts after <|endoftext|>, i.e. at the beginning of a document.
    """
    eot = tokenizer.special_tokens["<|endoftext|>"]
    generator = np.random.default_rng(seed)
    out = []
    for prompt in prompts:
        ids = np.asarray([[eot, *tokenizer.encode(prompt)]] * n)  # (n, P)
        ids = model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k,
                             generator=generator, stop_id=eot)
        for row in ids[:, 1:]:
            row = list(row)
            out.append(tokenizer.decode(row[: row.index(eot)] if eot in row else row))
    return out


def train_gpt(corpus: TextCorpus | None = None, steps: int = 300, batch_size: int = 32,
              block_size: int = 48, dim: int = 64, depth: int = 2, num_heads: int = 4,
              lr: float = 3e-3, warmup: int = 20, dropout: float = 0.0, eval_every: int = 50,
              seed: int = 0, progress: bool = True, out: str | Path | None = None, resume=None, stop_after=None,
              prompts=("", "a red", "two"), distributed: bool = False) -> dict:
    """Train a GPT on the caption corpus.

    Returns ``{"model", "corpus", "history", "metrics", "samples_start",
    "samples_end"}``; ``metrics`` holds validation loss and perplexity at step
    0 and at the end, and the training time. With ``out``, writes
    ``gpt.safetensors`` and ``tokenizer.json`` there. The file is a training state
    (``minivl.checkpoint``): ``resume`` names one and continues to ``steps`` as
    if never stopped; ``stop_after`` ends this session early. ``distributed``: data
    parallel over the ranks of ``mpirun`` (rank 0 writes the files).
    """
    manual_seed(seed)
    corpus = corpus or build_corpus(seed=seed)
    model = GPT(vocab_size=corpus.vocab_size, max_len=max(block_size, 64), dim=dim, depth=depth,
                num_heads=num_heads, dropout=dropout)
    windows = val_windows(corpus, block_size)
    start = {"step": 0, **run_eval(model, lambda: perplexity(model, windows))}
    samples_start = samples(model, corpus.tokenizer, prompts, seed=seed)

    batches = lm_batches(lm_stream(corpus.train, corpus.tokenizer), batch_size, block_size,
                         np.random.default_rng(seed))
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = WarmupCosineLR(optimizer, steps, min(warmup, steps), min_lr=lr / 10)
    begin = load_training_state(resume, model, optimizer, scheduler) if resume else 0
    end = min(steps, stop_after or steps)
    dp = data_parallel_for(model, distributed, dict(steps=steps, batch_size=batch_size, block_size=block_size,
                                                    lr=lr, seed=seed, dim=dim, depth=depth))
    history: History = train(model, lambda m, ids: m.loss(ids), skip(batches, begin), optimizer, end - begin,
                             scheduler, evaluate=lambda: perplexity(model, windows),
                             eval_every=eval_every, progress=progress, desc="gpt", data_parallel=dp)
    history.after(begin, start)
    final = history.last_eval()
    metrics = {
        "val_perplexity_start": start["val_perplexity"], "val_perplexity": final["val_perplexity"],
        "val_loss_start": start["val_loss"], "val_loss": final["val_loss"],
        "train_seconds": history.seconds, "steps": end, "parameters": model.num_parameters(),
        "tokenizer": f"byte-level BPE, {corpus.vocab_size} ids",
    }
    if out is not None and is_main(dp):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_training_state(out / "gpt.safetensors", model, optimizer, scheduler, end)
        corpus.tokenizer.save(out / "tokenizer.json")
    return {"model": model, "corpus": corpus, "history": history, "metrics": metrics,
            "samples_start": samples_start, "samples_end": samples(model, corpus.tokenizer, prompts,
                                                                   seed=seed)}
