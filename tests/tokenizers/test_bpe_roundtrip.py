"""Round trips of the trained BPETokenizer: text -> ids -> text, and
tokenizer -> file -> tokenizer, on any Unicode text hypothesis can draw."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.tokenizers import BPETokenizer, split_into_chunks

# Every code point UTF-8 can encode (lone surrogates cannot be).
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)

EDGE_CASES = [
    "",
    " ",
    "\x00\x01\x1f\x7f",
    "e\u0301 n\u0303 \u0915\u094d\u0937",  # combining marks, Devanagari conjunct
    "👩‍👩‍👧 🇩🇪 😀😀 ✈️",  # ZWJ sequence, flag, variation selector
    "\r\n\t  \u2028\u3000 \xa0",
    "don't we'll I'M 1234567 ½ x²",
    "\uffff\U0010ffff",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(deadline=None, max_examples=150)
@given(text=any_text)
def test_decode_inverts_encode(tok, text):
    ids = tok.encode(text, allowed_special="none")
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


@settings(deadline=None)
@given(text=any_text)
def test_encoding_is_chunk_by_chunk(tok, text):
    # Merges never cross a regex chunk: encoding the text equals encoding
    # each chunk on its own and concatenating.
    by_chunk = [i for chunk in split_into_chunks(text, tok.pattern) for i in tok.encode(chunk)]
    assert tok.encode(text) == by_chunk


def test_trained_tokens_never_cross_chunks(tok):
    # Each learned token is one chunk or a part of one: splitting its text
    # with the pattern gives at most one piece.
    for piece in tok.vocab.values():
        text = piece.decode("utf-8", errors="ignore")
        assert len(split_into_chunks(text, tok.pattern)) <= 1, piece


def test_training_text_compresses(tok, corpus):
    assert len(tok.encode(corpus)) < 0.5 * len(corpus.encode("utf-8"))


def test_partial_utf8_decodes_with_replacement(tok):
    euro = tok.encode("€")  # 3 bytes; this vocabulary never merged them
    assert len(euro) == 3
    assert tok.decode(euro[:2]) == "\ufffd"
    assert tok.decode_bytes(euro[:2]) == "€".encode()[:2]


def test_decode_unknown_id_raises(tok):
    with pytest.raises(ValueError, match="token id 99999"):
        tok.decode([1, 99999])


def test_encode_rejects_bytes(tok):
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(b"abc")


@pytest.fixture(scope="module")
def reloaded(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("bpe") / "tok.json"
    tok.save(path)
    return BPETokenizer.load(path), path


def test_saved_file_is_readable_json(tok, reloaded):
    _, path = reloaded
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["pattern"] == tok.pattern
    assert data["special_tokens"] == tok.special_tokens
    assert [tuple(m[:2]) for m in data["merges"]] == list(tok.merges)
    # The third field shows the merged token's text for a human reader.
    (a, b), first = next(iter(tok.merges.items()))
    assert data["merges"][0][2] == tok.vocab[first].decode("utf-8", errors="backslashreplace")


@settings(deadline=None)
@given(text=any_text)
def test_save_load_gives_identical_ids(tok, reloaded, text):
    loaded, _ = reloaded
    assert loaded.encode(text, allowed_special="none") == tok.encode(text, allowed_special="none")
    assert loaded.vocab == tok.vocab
    assert loaded.vocab_size == tok.vocab_size


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a minivl.BPETokenizer file"):
        BPETokenizer.load(path)


def test_visualise_marks_every_token(tok):
    text = "the cat\tsat\nok, done"
    shown = tok.visualise(text, sep="|")
    pieces = shown[1:-1].split("|")
    assert len(pieces) == len(tok.encode(text)) > 1
    assert "".join(pieces) == text.replace("\t", "\\t").replace("\n", "\\n")
    coloured = tok.visualise(text, ansi=True)
    assert coloured.count("\x1b[0m") == len(pieces)


def test_visualise_shows_partial_characters_as_bytes(tok):
    assert tok.visualise("€") == "|<e2>|<82>|<ac>|"
    assert tok.visualise("") == ""


def test_pickle_and_numpy_ids(tok, held_out):
    import pickle

    import numpy as np

    copy = pickle.loads(pickle.dumps(tok))
    ids = copy.encode(held_out[:500])
    assert ids == tok.encode(held_out[:500])
    assert tok.decode(np.array(ids)) == held_out[:500]
