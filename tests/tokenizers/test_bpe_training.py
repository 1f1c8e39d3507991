"""Training: a hand-worked example, the incremental trainer against the
naive recount-per-merge reference, and the vocabulary bookkeeping."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.tokenizers import BPETokenizer, split_into_chunks, train_merges, train_merges_naive


def test_hand_worked_example():
    # "aaabdaaabac" is one regex chunk (all letters).  By hand:
    #   pairs: aa x4 (aaa counts twice, twice), ab x2, bd, da, ba, ac x1
    #   merge 1: (a, a) -> 256, left to right: [256 a b d 256 a b a c]
    #   pairs: (256, a) x2, (a, b) x2, the rest x1: a tie at 2, and the rule
    #   "smallest pair wins" picks (97, 98) over (256, 97)
    #   merge 2: (a, b) -> 257: [256 257 d 256 257 a c]
    #   merge 3: (256, 257) -> 258, "aaab": [258 d 258 a c]
    tok = BPETokenizer().train("aaabdaaabac", vocab_size=259, progress=False)
    assert list(tok.merges.items()) == [((97, 97), 256), ((97, 98), 257), ((256, 257), 258)]
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    # A fourth merge: every remaining pair occurs once; the smallest is (97, 99) "ac".
    tok4 = BPETokenizer().train("aaabdaaabac", vocab_size=260, progress=False)
    assert list(tok4.merges)[3] == (97, 99)


def test_merges_never_cross_chunks():
    # Letters and punctuation are separate chunks, each a single byte here,
    # so however frequent "a." is, there is nothing to merge.
    tok = BPETokenizer().train("a.b." * 50, vocab_size=300, progress=False)
    assert tok.merges == {}
    assert tok.vocab_size == 256


def test_leading_space_merges_into_the_word():
    tok = BPETokenizer().train(" dog" * 20, vocab_size=259, progress=False)
    assert tok.encode(" dog") == [258]
    assert tok.vocab[258] == b" dog"


# A small alphabet makes repeats, ties and overlapping pairs ("aaa") common.
small_text = st.text(st.sampled_from("aab b\n.é1"), max_size=60)


@settings(deadline=None, max_examples=60)
@given(text=small_text, num_merges=st.integers(0, 40))
def test_incremental_training_equals_naive_recount(text, num_merges):
    chunks = [c.encode("utf-8") for c in split_into_chunks(text)]
    expected = train_merges_naive(chunks, num_merges)
    assert train_merges(Counter(chunks), num_merges) == expected
    tok = BPETokenizer().train(text, vocab_size=256 + num_merges, progress=False)
    assert list(tok.merges) == expected


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10**6))
def test_incremental_equals_naive_on_word_salad(seed):
    import random

    rng = random.Random(seed)
    words = ["the", "then", "than", "a", "an", "and", "anna", "banana", "nab", "ab"]
    text = " ".join(rng.choice(words) for _ in range(120))
    chunks = [c.encode() for c in split_into_chunks(text)]
    assert train_merges(Counter(chunks), 60) == train_merges_naive(chunks, 60)


def test_vocab_size_counts_bytes_merges_and_specials(corpus):
    tok = BPETokenizer().train(corpus, vocab_size=400, special_tokens=["<|a|>", "<|b|>"],
                               progress=False)
    assert tok.vocab_size == 400
    assert len(tok.merges) == 400 - 256 - 2
    assert tok.special_tokens == {"<|a|>": 398, "<|b|>": 399}
    assert sorted(tok.vocab) == list(range(398))


def test_training_skips_special_token_text():
    tok = BPETokenizer().train("<|endoftext|>" * 30 + "xy", vocab_size=258,
                               special_tokens=["<|endoftext|>"], progress=False)
    # Only "xy" was learned from: the special's own text formed no merge.
    assert list(tok.merges) == [(ord("x"), ord("y"))]


def test_training_stops_when_pairs_run_out():
    tok = BPETokenizer().train("abc", vocab_size=1000, progress=False)
    assert len(tok.merges) == 2
    assert tok.vocab_size == 258


def test_verbose_prints_each_merge(capsys):
    BPETokenizer().train("aaabdaaabac", vocab_size=259, progress=False, verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "b'aaab'" in lines[2]


@pytest.mark.parametrize("bad, error, match", [
    (dict(text="abc", vocab_size=255), ValueError, "vocab_size=255"),
    (dict(text="abc", vocab_size=256, special_tokens=["<s>"]), ValueError, "vocab_size=256"),
    (dict(text=b"abc", vocab_size=300), TypeError, "text must be a str"),
    (dict(text="abc", vocab_size=300, special_tokens=["<s>", "<s>"]), ValueError, "duplicates"),
])
def test_bad_training_arguments(bad, error, match):
    with pytest.raises(error, match=match):
        BPETokenizer().train(progress=False, **bad)


def test_bad_pattern_is_named():
    with pytest.raises(ValueError, match="not a valid regex"):
        BPETokenizer(pattern="(")
