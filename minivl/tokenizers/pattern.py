"""Pre-tokenisation: the regex that cuts text into chunks before any merge.

GPT-2 (Radford et al., 2019, section 2.2) splits text with one regular
expression so that BPE never merges across a letter/digit/punctuation
boundary, and so that a leading space stays glued to the word after it
(" dog" is one chunk, "dog." is two).  Merges happen only inside a chunk.

The ``\\p{L}`` / ``\\p{N}`` classes need the third-party ``regex`` module;
Python's built-in ``re`` does not know Unicode properties.
"""

from __future__ import annotations

from functools import lru_cache

import regex

# The pattern published with GPT-2 (encoder.py); also tiktoken's "r50k_base".
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

# GPT-4's "cl100k_base" pattern (as tiktoken publishes it): case-insensitive
# contractions, digits in groups of at most three, newlines kept apart.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


@lru_cache(maxsize=16)
def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a split pattern once; a bad pattern raises ValueError naming it."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {err}") from None


def split_into_chunks(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """Cut ``text`` into the chunks inside which merges may happen.

    Together the chunks always spell out the whole text: the last
    alternatives of both patterns match any whitespace left over.
    """
    return compile_pattern(pattern).findall(text)
