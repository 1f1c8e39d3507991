"""Oracle: exact ids against tiktoken (OpenAI's Rust BPE) built from our own
merge ranks, split pattern and special tokens, on text not used in training."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tiktoken = pytest.importorskip("tiktoken")

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def enc(tok):
    return tiktoken.Encoding(
        name="minivl-test", pat_str=tok.pattern,
        mergeable_ranks=tok.mergeable_ranks(), special_tokens=tok.special_tokens,
    )


def test_held_out_text_matches_tiktoken(tok, enc, held_out):
    assert tok.encode(held_out) == enc.encode(held_out)
    assert tok.decode(enc.encode(held_out)) == held_out


def test_specials_match_tiktoken(tok, enc, held_out):
    text = held_out[:200] + "<|endoftext|>" + held_out[200:400] + "<|pad|>"
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    with pytest.raises(ValueError):
        enc.encode(text)  # tiktoken raises too: the policies agree
    with pytest.raises(ValueError):
        tok.encode(text)


@settings(deadline=None, max_examples=200)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_matches_tiktoken(tok, enc, text):
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)


@settings(deadline=None, max_examples=100)
@given(words=st.lists(st.sampled_from(["the", " the", "café", "  ", "\n", "42", "don't",
                                       "😀", "nae", "x", "tsh", "!!"]), max_size=30))
def test_familiar_pieces_match_tiktoken(tok, enc, words):
    text = "".join(words)
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)


@pytest.fixture(scope="module")
def gpt4_style(corpus):
    from minivl.tokenizers import GPT4_SPLIT_PATTERN, BPETokenizer

    tok = BPETokenizer(pattern=GPT4_SPLIT_PATTERN).train(corpus, vocab_size=500, progress=False)
    enc = tiktoken.Encoding(name="minivl-gpt4-style", pat_str=tok.pattern,
                            mergeable_ranks=tok.mergeable_ranks(), special_tokens={})
    return tok, enc


@settings(deadline=None, max_examples=100)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_gpt4_pattern_matches_tiktoken(gpt4_style, held_out, text):
    tok, enc = gpt4_style
    text = held_out[:100] + text + "  \n\n 12345 DON'T"
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
