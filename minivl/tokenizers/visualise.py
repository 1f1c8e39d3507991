"""Seeing the tokens: text with its BPE token boundaries marked.

The lecture's point about BPE is visible only when the pieces are shown:
frequent words are one token (" the"), rare ones split into several, and a
character outside ASCII may take several byte tokens.
"""

from __future__ import annotations

# Background colours for ANSI terminals / notebooks; neighbouring tokens differ.
_ANSI_BACKGROUNDS = ("\x1b[48;5;153m", "\x1b[48;5;223m", "\x1b[48;5;194m", "\x1b[48;5;225m")
_ANSI_RESET = "\x1b[0m"


def token_text(piece: bytes) -> str:
    """A printable form of one token's bytes.

    Whole UTF-8 text is shown as itself (newlines and tabs as \\n, \\t); a
    token holding part of a multi-byte character is shown as its bytes, e.g.
    <e2 82>, since it has no text of its own.
    """
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return "<" + " ".join(f"{b:02x}" for b in piece) + ">"
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def show_tokens(tokenizer, text: str, ansi: bool = False, sep: str = "|") -> str:
    """``text`` cut at its token boundaries (all special tokens allowed).

    Plain form: tokens between ``sep`` marks, e.g. ``|Hello| world|!|``.
    ``ansi=True``: tokens on alternating background colours instead.
    """
    pieces = [token_text(tokenizer.token_bytes(i))
              for i in tokenizer.encode(text, allowed_special="all")]
    if not ansi:
        return sep + sep.join(pieces) + sep if pieces else ""
    return "".join(
        f"{_ANSI_BACKGROUNDS[k % len(_ANSI_BACKGROUNDS)]}{piece}{_ANSI_RESET}"
        for k, piece in enumerate(pieces)
    )
