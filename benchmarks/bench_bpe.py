"""Benchmark: byte-level BPE training and encoding (minivl.tokenizers).

Training, on ~1 MB of text to a 4,096-token vocabulary:
  - minivl's incremental trainer (pair counts + occurrence index + lazy heap);
  - the naive trainer that recounts every pair after every merge, timed on a
    smaller slice for a few merges and extrapolated linearly in text size and
    merge count (each merge is one pass over the token sequence); as the
    sequence shrinks while merges proceed, a range is given: the high end
    assumes one token per byte throughout, the low end the final token count;
  - Hugging Face ``tokenizers`` ByteLevel BPE (Rust, multi-threaded), if installed.
Encoding throughput (MB/s) on held-out text: minivl (cold and warm chunk
cache) against tiktoken (Rust) built from minivl's own merge ranks, with the
ids checked equal first.

    python benchmarks/bench_bpe.py            # full run, writes benchmarks/results/bpe_cpu.json
    python benchmarks/bench_bpe.py --quick    # 200 KB, vocab 1024
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections import Counter
from pathlib import Path

from minivl.tokenizers import BPETokenizer, split_into_chunks, train_merges, train_merges_naive

LECTURE = Path("/work/shared/seeds/000_79046234e9cd832f.txt")
RESULTS = Path(__file__).parent / "results" / "bpe_cpu.json"


def make_corpus(num_chars: int, seed: int) -> str:
    """Deterministic text: the lecture notes if present, then a Zipf-weighted
    word salad from a fixed vocabulary of made-up words, with punctuation,
    numbers, some accented and non-Latin words and line breaks."""
    rng = random.Random(1234)  # the vocabulary is the same for every seed
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "st", "qu", "ng"]
    vocab = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(20000)})
    vocab += ["café", "naïve", "Zürich", "über", "東京", "данные", "😀", "λόγος"]
    rng.shuffle(vocab)
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    rng = random.Random(seed)
    parts = [LECTURE.read_text(encoding="utf-8")] if LECTURE.exists() and seed == 0 else []
    size = sum(map(len, parts))
    while size < num_chars:
        words = rng.choices(vocab, weights, k=rng.randint(4, 20))
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        if rng.random() < 0.1:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
        sentence = " ".join(words) + rng.choice([". ", ", ", "! ", "? ", ".\n", ".\n\n"])
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)[:num_chars]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_training(text: str, vocab_size: int, naive_chars: int, naive_merges: int) -> dict:
    num_merges = vocab_size - 256
    tok, t_ours = timed(BPETokenizer().train, text, vocab_size, progress=False)
    out = {"text_bytes": len(text.encode()), "vocab_size": vocab_size, "minivl_s": t_ours}

    # Naive vs incremental on the same slice and merge count, merges checked equal.
    piece = text[:naive_chars]
    chunks = [c.encode() for c in split_into_chunks(piece)]
    naive, t_naive = timed(train_merges_naive, chunks, naive_merges)
    fast, t_fast = timed(train_merges, Counter(chunks), naive_merges)
    if naive != fast:
        raise AssertionError("incremental and naive training disagree")
    # One naive merge is one pass over the current token sequence, which starts
    # at one token per byte and shrinks to the final token count: so the full
    # run lies between these two linear extrapolations.
    scale = (len(text) / len(piece)) * (num_merges / naive_merges)
    shrink = len(tok.encode_ordinary(text)) / len(text.encode())
    out.update(
        naive_slice_bytes=len(piece.encode()), naive_slice_merges=naive_merges,
        naive_slice_s=t_naive, minivl_slice_s=t_fast,
        naive_extrapolated_high_s=t_naive * scale,
        naive_extrapolated_low_s=t_naive * scale * shrink,
    )

    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:
        out["hf_tokenizers_s"] = None
    else:
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        _, out["hf_tokenizers_s"] = timed(hf.train_from_iterator, [text], trainer)
    return out, tok


def bench_encoding(tok: BPETokenizer, text: str, repeats: int) -> dict:
    mb = len(text.encode()) / 1e6
    tok._encode_chunk.cache_clear()
    ids, t_cold = timed(tok.encode, text)
    t_warm = min(timed(tok.encode, text)[1] for _ in range(repeats))
    out = {"text_bytes": len(text.encode()), "tokens": len(ids),
           "minivl_cold_MBps": mb / t_cold, "minivl_warm_MBps": mb / t_warm}
    try:
        import tiktoken
    except ImportError:
        out["tiktoken_MBps"] = None
        return out
    enc = tiktoken.Encoding(name="minivl-bench", pat_str=tok.pattern,
                            mergeable_ranks=tok.mergeable_ranks(), special_tokens={})
    if enc.encode_ordinary(text) != ids:
        raise AssertionError("tiktoken and minivl ids differ")
    out["tiktoken_MBps"] = mb / min(timed(enc.encode_ordinary, text)[1] for _ in range(repeats))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000, help="training text size")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--naive-chars", type=int, default=100_000,
                        help="text slice the naive trainer runs on")
    parser.add_argument("--naive-merges", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 KB, vocab 1024")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.chars, args.vocab_size, args.naive_chars, args.naive_merges = 200_000, 1024, 20_000, 50

    train_text = make_corpus(args.chars, seed=0)
    held_out = make_corpus(args.chars, seed=1)
    training, tok = bench_training(train_text, args.vocab_size, args.naive_chars, args.naive_merges)
    encoding = bench_encoding(tok, held_out, args.repeats)

    tr, en = training, encoding
    rows = [
        ("train: minivl incremental", f"{tr['minivl_s']:.2f} s", "1.0x"),
        ("train: naive recount (extrapolated)",
         f"{tr['naive_extrapolated_low_s']:.0f}-{tr['naive_extrapolated_high_s']:.0f} s",
         f"{tr['naive_extrapolated_low_s'] / tr['minivl_s']:.0f}-"
         f"{tr['naive_extrapolated_high_s'] / tr['minivl_s']:.0f}x slower"),
        (f"  measured on {tr['naive_slice_bytes'] // 1000} KB, {tr['naive_slice_merges']} merges",
         f"{tr['naive_slice_s']:.2f} s vs {tr['minivl_slice_s']:.3f} s",
         f"{tr['naive_slice_s'] / tr['minivl_slice_s']:.0f}x slower"),
    ]
    if tr["hf_tokenizers_s"] is not None:
        rows.append(("train: HF tokenizers ByteLevel BPE", f"{tr['hf_tokenizers_s']:.2f} s",
                     f"{tr['minivl_s'] / tr['hf_tokenizers_s']:.1f}x faster than minivl"))
    rows += [
        ("encode: minivl, cold cache", f"{en['minivl_cold_MBps']:.2f} MB/s", "1.0x"),
        ("encode: minivl, warm cache", f"{en['minivl_warm_MBps']:.2f} MB/s",
         f"{en['minivl_warm_MBps'] / en['minivl_cold_MBps']:.1f}x"),
    ]
    if en["tiktoken_MBps"] is not None:
        rows.append(("encode: tiktoken, same ranks", f"{en['tiktoken_MBps']:.2f} MB/s",
                     f"{en['tiktoken_MBps'] / en['minivl_warm_MBps']:.1f}x faster than warm"))
    print(f"byte-level BPE, {tr['text_bytes'] / 1e6:.2f} MB training text, "
          f"vocab {tr['vocab_size']}, held-out {en['text_bytes'] / 1e6:.2f} MB "
          f"({en['tokens']} tokens)")
    for name, value, ratio in rows:
        print(f"{name:<42} {value:>24}   {ratio}")

    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
              "python": platform.python_version(), "training": training, "encoding": encoding}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out} (1-min load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs: other work on the machine slows every row)")


if __name__ == "__main__":
    main()
