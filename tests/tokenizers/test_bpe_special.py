"""Special tokens: split out before the regex, under an explicit policy
(tiktoken's default is to raise on special text that was not allowed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

EOT, PAD = "<|endoftext|>", "<|pad|>"


def test_default_policy_raises_on_special_text(tok):
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>' at position 6"):
        tok.encode("hello <|endoftext|> world")


def test_all_maps_specials_to_their_ids(tok):
    ids = tok.encode(f"a{EOT}b{PAD}{EOT}", allowed_special="all")
    assert ids == (tok.encode("a") + [tok.special_tokens[EOT]] + tok.encode("b")
                   + [tok.special_tokens[PAD], tok.special_tokens[EOT]])


def test_none_encodes_special_text_as_plain_text(tok):
    ids = tok.encode(EOT, allowed_special="none")
    assert tok.special_tokens[EOT] not in ids
    assert ids == tok.encode_ordinary(EOT)
    assert tok.decode(ids) == EOT


def test_a_set_allows_some_and_raises_on_the_rest(tok):
    assert tok.encode(EOT, allowed_special={EOT}) == [tok.special_tokens[EOT]]
    with pytest.raises(ValueError, match="pad"):
        tok.encode(f"{EOT}{PAD}", allowed_special={EOT})


def test_unknown_policy_and_unknown_special_are_named(tok):
    with pytest.raises(ValueError, match="allowed_special must be one of"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})


def test_special_text_is_never_produced_by_bpe(tok, corpus):
    ids = tok.encode(corpus + EOT, allowed_special="none")
    assert not set(ids) & set(tok.special_tokens.values())


@settings(deadline=None)
@given(parts=st.lists(st.one_of(st.text(max_size=10), st.sampled_from([EOT, PAD])), max_size=8))
def test_specials_round_trip_and_split_first(tok, parts):
    text = "".join(parts)
    ids = tok.encode(text, allowed_special="all")
    assert tok.decode(ids) == text
    assert ids.count(tok.special_tokens[EOT]) == text.count(EOT)
