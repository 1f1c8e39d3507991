"""Shared fixtures for the tokenizer tests: a deterministic corpus and a
tokenizer trained on it once per test module."""

from __future__ import annotations

import random

import pytest

from minivl.tokenizers import BPETokenizer

SPECIALS = ["<|endoftext|>", "<|pad|>"]


def word_salad(num_words: int, seed: int) -> str:
    """Zipf-weighted made-up words with punctuation, digits, accents, emoji,
    CJK, tabs and newlines; the vocabulary is fixed, the order depends on seed."""
    rng = random.Random(7)
    letters = "etaoinshrdlucmfwyp"
    vocab = ["".join(rng.choices(letters, k=rng.randint(1, 7))) for _ in range(400)]
    vocab += ["café", "naïve", "東京", "😀", "Ωmega", "x²", "don't", "we'll", "42", "3.14"]
    weights = [1.0 / (k + 1) for k in range(len(vocab))]
    rng = random.Random(seed)
    words = rng.choices(vocab, weights, k=num_words)
    seps = [" "] * 12 + ["  ", ", ", ". ", "!\n", "\n\n", "\t", " - "]
    return "".join(w + rng.choice(seps) for w in words)


@pytest.fixture(scope="module")
def corpus() -> str:
    return word_salad(6000, seed=0)


@pytest.fixture(scope="module")
def held_out() -> str:
    return word_salad(2000, seed=1)


@pytest.fixture(scope="module")
def tok(corpus) -> BPETokenizer:
    return BPETokenizer().train(corpus, vocab_size=700, special_tokens=SPECIALS, progress=False)
