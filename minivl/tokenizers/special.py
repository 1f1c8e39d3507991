"""Special tokens: cut out before the regex, under an explicit policy.

A special token such as ``<|endoftext|>`` is a single id that ordinary text
must never be able to produce by accident: GPT-2 inserts it between documents.
So text is split on the special strings *first*; the pieces between them go
through the regex and BPE, the specials map straight to their ids.

Which specials may appear is the caller's choice, as in tiktoken, because a
user-supplied string that happens to contain "<|endoftext|>" would otherwise
end a document early (a prompt-injection hazard):

- ``"none_raise"`` (default): no special is allowed; finding one raises.
- ``"all"``: every special string in the text becomes its id.
- ``"none"``: specials are treated as ordinary text (encoded by BPE).
- a set of strings: those become ids; any other special found raises.
"""

from __future__ import annotations

from collections.abc import Iterable

import regex

POLICIES = ("none_raise", "all", "none")


def resolve_allowed(allowed_special, special_tokens: dict[str, int]) -> tuple[set[str], bool]:
    """Turn a policy into (specials to split out, whether the rest must raise)."""
    if isinstance(allowed_special, str):
        if allowed_special == "all":
            return set(special_tokens), False
        if allowed_special == "none":
            return set(), False
        if allowed_special == "none_raise":
            return set(), True
        raise ValueError(
            f"allowed_special must be one of {POLICIES} or a set of special tokens, "
            f"got {allowed_special!r}"
        )
    if not isinstance(allowed_special, Iterable):
        raise TypeError(
            f"allowed_special must be a str policy or a set, got {type(allowed_special).__name__}"
        )
    allowed = set(allowed_special)
    unknown = allowed - set(special_tokens)
    if unknown:
        raise ValueError(
            f"allowed_special names {sorted(unknown)}, which are not special tokens of this "
            f"tokenizer (it has {sorted(special_tokens)})"
        )
    return allowed, True


def _alternation(strings: Iterable[str]) -> str:
    # Longest first, so that "<|end|>x" beats a shorter special that is its prefix.
    return "|".join(regex.escape(s) for s in sorted(strings, key=len, reverse=True))


def check_disallowed(text: str, disallowed: Iterable[str]) -> None:
    """Raise ValueError if any disallowed special token's text occurs in ``text``."""
    disallowed = list(disallowed)
    if not disallowed:
        return
    found = regex.search(_alternation(disallowed), text)
    if found:
        raise ValueError(
            f"text contains the special token {found.group()!r} at position {found.start()}, "
            "which is not allowed. Pass allowed_special='all' (or a set naming it) to encode it "
            "as its special id, or allowed_special='none' to encode it as plain text."
        )


def split_on_special(text: str, allowed: Iterable[str]) -> list[tuple[str, bool]]:
    """Split ``text`` into (piece, is_special) pairs, specials being those in ``allowed``.

    Empty pieces are dropped; joining the pieces gives back ``text``.
    """
    allowed = list(allowed)
    if not allowed:
        return [(text, False)] if text else []
    # The capturing group makes regex.split keep the separators: the odd entries.
    parts = regex.split(f"({_alternation(allowed)})", text)
    return [(part, i % 2 == 1) for i, part in enumerate(parts) if part]
