"""GPT-2's published tokenizer files: ``encoder.json`` + ``vocab.bpe``.

OpenAI released GPT-2's BPE as two text files.  Neither stores raw bytes:
every byte value is first mapped to a printable Unicode character, so that
the files contain no spaces, control characters or half UTF-8 sequences
(a space becomes "Ġ", a newline "Ċ").  The printable ASCII and Latin-1
bytes map to themselves; the other 68 byte values are sent, in increasing
order, to the characters from U+0100 on.

- ``encoder.json``: printable token string -> GPT-2 id.  The 256 single-byte
  tokens come first, in the order of the mapping (so "!" is 0, not 33),
  then one id per merge, then ``<|endoftext|>`` = 50256.
- ``vocab.bpe``: a ``#version`` line, then one merge per line, "left right",
  in rank order.

Reading them into a ``BPETokenizer`` gives GPT-2's exact ids.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte value -> printable character map (a bijection on 256 values)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    unprintable = [b for b in range(256) if b not in mapping]
    for n, b in enumerate(unprintable):
        mapping[b] = chr(256 + n)
    return mapping


def unicode_to_bytes(token: str) -> bytes:
    """Undo the printable mapping for one token string."""
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    try:
        return bytes(decoder[c] for c in token)
    except KeyError as err:
        raise ValueError(
            f"{token!r} holds {err.args[0]!r}, which is not a character of GPT-2's byte mapping"
        ) from None


def read_gpt2_files(encoder_json, vocab_bpe):
    """Parse the pair into (byte_ids, merges, special_tokens) for ``BPETokenizer``.

    ``byte_ids[b]`` is the id of byte value ``b``; ``merges`` lists (left id,
    right id) in rank order, and merge ``i`` must have id 256 + i in the
    encoder (true of GPT-2's files); entries of the encoder that are neither a
    byte nor a merge (``<|endoftext|>``) become special tokens.
    """
    encoder: dict[str, int] = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")

    byte_to_char = bytes_to_unicode()
    missing = [c for c in byte_to_char.values() if c not in encoder]
    if missing:
        raise ValueError(
            f"{encoder_json} lacks {len(missing)} single-byte tokens, e.g. {missing[0]!r}"
        )
    byte_ids = [encoder[byte_to_char[b]] for b in range(256)]
    if sorted(byte_ids) != list(range(256)):
        raise ValueError(f"{encoder_json}: the 256 single-byte tokens must have ids 0..255")

    merges: list[tuple[int, int]] = []
    used = set(byte_ids)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{vocab_bpe} line {line_no}: expected 'left right', got {line!r}")
        left, right = parts
        for part in parts:
            if part not in encoder:
                raise ValueError(f"{vocab_bpe} line {line_no}: {part!r} is not in {encoder_json}")
        merged = left + right
        expected = 256 + len(merges)
        if encoder.get(merged) != expected:
            raise ValueError(
                f"{vocab_bpe} line {line_no}: merge {len(merges)} makes {merged!r}, whose id in "
                f"{encoder_json} is {encoder.get(merged)!r}; expected {expected} (256 + rank)"
            )
        merges.append((encoder[left], encoder[right]))
        used.add(expected)

    special_tokens = {text: i for text, i in encoder.items() if i not in used}
    return byte_ids, merges, special_tokens


def write_gpt2_files(tokenizer, encoder_json, vocab_bpe) -> None:
    """Write ``tokenizer`` as an encoder.json / vocab.bpe pair (readable by
    Hugging Face ``tokenizers`` and by ``read_gpt2_files``)."""
    byte_to_char = bytes_to_unicode()
    printable = lambda piece: "".join(byte_to_char[b] for b in piece)  # noqa: E731
    encoder = {printable(piece): i for i, piece in sorted(tokenizer.vocab.items())}
    if len(encoder) != len(tokenizer.vocab):
        raise ValueError("two ids spell the same bytes; GPT-2's format keys tokens by their text")
    encoder.update(tokenizer.special_tokens)
    Path(encoder_json).write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [
        f"{printable(tokenizer.vocab[a])} {printable(tokenizer.vocab[b])}"
        for a, b in tokenizer.merges
    ]
    Path(vocab_bpe).write_text("\n".join(lines) + "\n", encoding="utf-8")
