"""Loading GPT-2's published encoder.json + vocab.bpe pair, on a small file
pair written by hand here in the same format."""

from __future__ import annotations

import json

import pytest

from minivl.tokenizers import BPETokenizer, bytes_to_unicode, read_gpt2_files, write_gpt2_files

# GPT-2's base tokens, in the order its encoder.json gives them ids 0..255:
# printable ASCII "!".."~", then "¡".."¬", "®".."ÿ", then the 68 characters
# U+0100.. that stand in for the unprintable bytes (space is "Ġ", newline "Ċ").
BASE = (
    [chr(c) for c in range(ord("!"), ord("~") + 1)]
    + [chr(c) for c in range(ord("¡"), ord("¬") + 1)]
    + [chr(c) for c in range(ord("®"), ord("ÿ") + 1)]
    + [chr(0x100 + n) for n in range(68)]
)
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ Ġ"]


@pytest.fixture
def gpt2_pair(tmp_path):
    encoder = {c: i for i, c in enumerate(BASE)}
    for rank, line in enumerate(MERGES):
        encoder[line.replace(" ", "")] = 256 + rank  # "Ġt", "he", "Ġthe", "ĠĠ"
    encoder["<|endoftext|>"] = 256 + len(MERGES)
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n",
                                        encoding="utf-8")
    return tmp_path / "encoder.json", tmp_path / "vocab.bpe"


def test_byte_mapping_matches_gpt2():
    mapping = bytes_to_unicode()
    assert sorted(mapping) == list(range(256))
    assert len(set(mapping.values())) == 256
    assert mapping[ord(" ")] == "Ġ" and mapping[ord("\n")] == "Ċ" and mapping[0] == "Ā"
    assert mapping[ord("A")] == "A" and mapping[0xAD] == "Ń"  # soft hyphen is unprintable


def test_gpt2_ids_from_the_file_pair(gpt2_pair):
    tok = BPETokenizer.from_gpt2_files(*gpt2_pair)
    # GPT-2's ids for single bytes: "!" is 0, "t" is 83, space 220, newline 198, NUL 188.
    assert tok.encode("!") == [0]
    assert tok.encode(" \n\x00") == [220, 198, 188]
    # By hand: " the" -> Ġ t h e -> (Ġ t)=256 first: Ġt h e -> (h e)=257 -> Ġt he -> 258.
    assert tok.encode(" the") == [258]
    # "the" has no leading space: t h e -> (h e) only.
    assert tok.encode("the") == [83, 257]
    # "   x" -> chunks "  " (whitespace not followed by non-space) and " x".
    assert tok.encode("   x") == [259, 220, ord("x") - 33]
    assert tok.encode("<|endoftext|>", allowed_special="all") == [260]
    assert tok.special_tokens == {"<|endoftext|>": 260}
    assert tok.vocab_size == 261
    assert tok.decode([258, 198, 260]) == " the\n<|endoftext|>"


def test_write_then_read_gives_the_same_tokenizer(tok, tmp_path, held_out):
    write_gpt2_files(tok, tmp_path / "e.json", tmp_path / "m.bpe")
    loaded = BPETokenizer.from_gpt2_files(tmp_path / "e.json", tmp_path / "m.bpe")
    assert loaded.encode(held_out, allowed_special="all") == tok.encode(held_out, allowed_special="all")
    assert loaded.special_tokens == tok.special_tokens


def test_merge_with_wrong_id_is_named(gpt2_pair):
    encoder_json, vocab_bpe = gpt2_pair
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    encoder["he"], encoder["Ġt"] = encoder["Ġt"], encoder["he"]
    encoder_json.write_text(json.dumps(encoder), encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: merge 0 makes 'Ġt'"):
        read_gpt2_files(encoder_json, vocab_bpe)


def test_missing_byte_token_is_named(gpt2_pair):
    encoder_json, vocab_bpe = gpt2_pair
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    del encoder["Ġ"]
    encoder_json.write_text(json.dumps(encoder), encoding="utf-8")
    with pytest.raises(ValueError, match="lacks 1 single-byte tokens"):
        read_gpt2_files(encoder_json, vocab_bpe)


@pytest.mark.oracle
def test_hugging_face_reads_the_same_ids(tok, tmp_path, held_out):
    tokenizers = pytest.importorskip("tokenizers")
    write_gpt2_files(tok, tmp_path / "e.json", tmp_path / "m.bpe")
    hf = tokenizers.ByteLevelBPETokenizer(str(tmp_path / "e.json"), str(tmp_path / "m.bpe"))
    text = held_out + " naïve 東京 😀\n\n  x"
    assert hf.encode(text).ids == tok.encode(text)


def test_gpt2_tokenizer_saves_and_loads(gpt2_pair, tmp_path):
    tok = BPETokenizer.from_gpt2_files(*gpt2_pair)
    tok.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(tmp_path / "tok.json")
    assert loaded.byte_ids == tok.byte_ids
    text = " the then\n\n   <|endoftext|>"
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
