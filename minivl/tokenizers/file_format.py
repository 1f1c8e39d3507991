"""minivl's tokenizer file: JSON that a person can read, one merge per line.

    {
      "format": "minivl.BPETokenizer",
      "version": 1,
      "pattern": "'s|'t|...",
      "special_tokens": {"<|endoftext|>": 4095},
      "merges": [
        [32, 116, " t"],
        [104, 101, "he"],
        ...
      ]
    }

Merge ``i`` joins the ids ``[left, right]`` into id 256 + i; the third field
is the merged token's text, for the reader only (bytes that are not whole
UTF-8 show as \\xNN).  Ids, not text, are what is loaded, so the file is
exact even for tokens that split a character.  ``byte_ids`` appears only
for a tokenizer whose bytes are not ids 0..255 (one read from GPT-2's files).
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "minivl.BPETokenizer"
FORMAT_VERSION = 1


def save_tokenizer(tokenizer, path) -> None:
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "pattern": tokenizer.pattern,
        "special_tokens": tokenizer.special_tokens,
    }
    if tokenizer.byte_ids != tuple(range(256)):
        header["byte_ids"] = list(tokenizer.byte_ids)
    merges = ",\n    ".join(
        json.dumps(
            [left, right, tokenizer.vocab[i].decode("utf-8", errors="backslashreplace")],
            ensure_ascii=False,
        )
        for (left, right), i in tokenizer.merges.items()
    )
    # json.dumps would put every number on its own line: write the list by hand.
    head = json.dumps(header, ensure_ascii=False, indent=2)[: -len("\n}")]
    text = f'{head},\n  "merges": [\n    {merges}\n  ]\n}}\n'
    Path(path).write_text(text, encoding="utf-8")


def load_tokenizer(path) -> dict:
    """The keyword arguments of ``BPETokenizer`` stored in ``path``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a {FORMAT} file (format={found!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has version {data.get('version')!r}, expected {FORMAT_VERSION}")
    kwargs = {
        "pattern": data["pattern"],
        "merges": [(merge[0], merge[1]) for merge in data["merges"]],
        "special_tokens": data["special_tokens"],
    }
    if "byte_ids" in data:
        kwargs["byte_ids"] = data["byte_ids"]
    return kwargs
