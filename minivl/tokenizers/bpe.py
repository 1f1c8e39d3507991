"""BPETokenizer: GPT-2's byte-level byte-pair encoding, trainable on any text.

Follows GPT-2 (Radford et al., 2019, section 2.2); the lecture's DALL-E
stage 2 (slide S26) feeds such "BPE text" to its transformer.
Text -> UTF-8 bytes (ids 0..255, so nothing is ever out of vocabulary) ->
regex chunks -> learned merges inside each chunk (merge i is id 256 + i);
special tokens take the ids after the merges.

    tok = BPETokenizer().train(text, vocab_size=4096, special_tokens=["<|endoftext|>"])
    ids = tok.encode("hello world")
    tok.decode(ids) == "hello world"

``vocab_size`` counts everything, as GPT-2's 50,257 does: 256 bytes +
merges + special tokens.  The pieces live beside this file: ``pattern``
(the regex), ``special`` (the allowed/disallowed policy), ``merge`` (one
merge step), ``training`` (learning the merges), ``file_format`` (save /
load), ``gpt2_files`` (GPT-2's published encoder.json / vocab.bpe),
``visualise`` (token boundaries).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from .file_format import load_tokenizer, save_tokenizer
from .gpt2_files import read_gpt2_files
from .merge import apply_merges
from .pattern import GPT2_SPLIT_PATTERN, compile_pattern
from .special import check_disallowed, resolve_allowed, split_on_special
from .training import train_merges
from .visualise import show_tokens

_IDENTITY_BYTES = tuple(range(256))


class BPETokenizer:
    """Byte-level BPE with a regex pre-tokeniser and special tokens.

    Attributes: ``pattern`` (the split regex), ``merges`` (pair -> merged id,
    in the order learned), ``vocab`` (id -> bytes), ``special_tokens``
    (str -> id), ``byte_ids`` (the id of each byte value: 0..255 for a
    tokenizer trained here, GPT-2's own order when loaded from its files).
    """

    def __init__(
        self,
        pattern: str = GPT2_SPLIT_PATTERN,
        merges: list[tuple[int, int]] | None = None,
        special_tokens: dict[str, int] | None = None,
        byte_ids: list[int] | tuple[int, ...] = _IDENTITY_BYTES,
        cache_size: int = 2**16,
    ):
        compile_pattern(pattern)  # fail early on a bad regex
        self.pattern = pattern
        self.byte_ids = tuple(byte_ids)
        if sorted(self.byte_ids) != list(range(256)):
            raise ValueError("byte_ids must be a permutation of 0..255, one id per byte value")
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        self.merges: dict[tuple[int, int], int] = {}
        for left, right in merges or []:
            self._add_merge((int(left), int(right)))
        self.special_tokens: dict[str, int] = {}
        self._special_bytes: dict[int, bytes] = {}
        for text, i in (special_tokens or {}).items():
            self._add_special(text, int(i))
        self.cache_size = cache_size
        self._make_cache()

    def _make_cache(self) -> None:
        # Natural text repeats its chunks (" the", " of", ...): remember their ids.
        self._encode_chunk = lru_cache(maxsize=self.cache_size)(self._encode_chunk_uncached)

    def __getstate__(self):  # the cache holds a bound method: rebuild it instead of pickling
        state = self.__dict__.copy()
        del state["_encode_chunk"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._make_cache()

    # ---- building the vocabulary ------------------------------------------------

    def _add_merge(self, pair: tuple[int, int]) -> None:
        new_id = 256 + len(self.merges)
        for side, i in zip(("left", "right"), pair):
            if i not in self.vocab:
                raise ValueError(
                    f"merge {len(self.merges)} {pair}: {side} id {i} is not yet defined"
                )
        if pair in self.merges:
            raise ValueError(f"merge {len(self.merges)} {pair} is listed twice")
        self.merges[pair] = new_id
        self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]

    def _add_special(self, text: str, i: int) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError(f"special tokens must be non-empty str, got {text!r}")
        taken = set(self.vocab) | set(self.special_tokens.values())
        if i in taken:
            raise ValueError(f"special token {text!r} wants id {i}, which is already used")
        self.special_tokens[text] = i
        self._special_bytes[i] = text.encode("utf-8")

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    def train(
        self,
        text: str,
        vocab_size: int,
        special_tokens: list[str] | tuple[str, ...] = (),
        progress: bool = True,
        verbose: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Special tokens get the ids after the merges, in the order given; their
        text inside ``text`` is cut out and not learned from.  Stops early (and
        ``vocab_size`` comes out smaller) if the text runs out of pairs.
        ``progress`` shows a tqdm bar; ``verbose`` prints every merge.
        Returns ``self``.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        special_tokens = list(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than 256 bytes + "
                f"{len(special_tokens)} special tokens"
            )
        if not all(isinstance(t, str) and t for t in special_tokens):
            raise ValueError(f"special_tokens must be non-empty strings, got {special_tokens}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens has duplicates: {special_tokens}")
        if self.byte_ids != _IDENTITY_BYTES:
            raise ValueError("train() starts from raw bytes; use a fresh BPETokenizer()")

        regex = compile_pattern(self.pattern)
        chunk_counts: Counter = Counter()
        for piece, is_special in split_on_special(text, special_tokens):
            if not is_special:
                chunk_counts.update(c.encode("utf-8") for c in regex.findall(piece))

        learned = {i: bytes([i]) for i in range(256)}  # for the verbose printout only

        def report(new_id, pair, count, rank):
            token = learned[new_id] = learned[pair[0]] + learned[pair[1]]
            print(f"merge {rank + 1}/{num_merges}: {pair} -> {new_id} {token!r} ({count} times)")

        self.vocab = {i: bytes([i]) for i in range(256)}
        self.merges = {}
        self.special_tokens, self._special_bytes = {}, {}
        for pair in train_merges(
            chunk_counts, num_merges, progress=progress, on_merge=report if verbose else None
        ):
            self._add_merge(pair)
        for offset, special in enumerate(special_tokens):
            self._add_special(special, len(self.vocab) + offset)
        self._encode_chunk.cache_clear()
        return self

    # ---- encoding and decoding --------------------------------------------------

    def _encode_chunk_uncached(self, chunk: str) -> tuple[int, ...]:
        ids = [self.byte_ids[b] for b in chunk.encode("utf-8")]
        return tuple(apply_merges(ids, self.merges))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with BPE only: special-token text is ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        for chunk in compile_pattern(self.pattern).findall(text):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Encode ``text`` to ids.

        ``allowed_special``: ``"none_raise"`` (default: any special-token text
        raises ValueError), ``"all"``, ``"none"`` (specials are plain text), or a
        set of the special tokens allowed (any other one found raises).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        allowed, must_raise = resolve_allowed(allowed_special, self.special_tokens)
        if must_raise:
            check_disallowed(text, set(self.special_tokens) - allowed)
        ids: list[int] = []
        for piece, is_special in split_on_special(text, allowed):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token's UTF-8 text)."""
        piece = self.vocab.get(token_id, self._special_bytes.get(token_id))
        if piece is None:
            raise ValueError(
                f"token id {token_id!r} is not in this tokenizer (vocab_size={self.vocab_size})"
            )
        return piece

    def decode_bytes(self, ids) -> bytes:
        """Concatenate the bytes of ``ids``."""
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids) -> str:
        """Ids -> text.  A sequence that cuts a UTF-8 character in half (as a
        language model may sample) decodes with U+FFFD in its place."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def visualise(self, text: str, ansi: bool = False, sep: str = "|") -> str:
        """``text`` with its token boundaries shown; see ``visualise.show_tokens``."""
        return show_tokens(self, text, ansi=ansi, sep=sep)

    # ---- interoperability -------------------------------------------------------

    def mergeable_ranks(self) -> dict[bytes, int]:
        """Token bytes -> id, without specials: what ``tiktoken.Encoding`` takes.

        Raises ValueError if two ids spell the same bytes (tiktoken keys ranks
        by bytes, so such a vocabulary has no tiktoken equivalent).
        """
        ranks: dict[bytes, int] = {}
        for i, piece in self.vocab.items():
            if piece in ranks:
                raise ValueError(f"ids {ranks[piece]} and {i} both spell {piece!r}")
            ranks[piece] = i
        return ranks

    def save(self, path) -> None:
        """Write a human-readable JSON file; see ``file_format``."""
        save_tokenizer(self, path)

    @classmethod
    def load(cls, path) -> BPETokenizer:
        """Read a file written by ``save``."""
        return cls(**load_tokenizer(path))

    @classmethod
    def from_gpt2_files(cls, encoder_json, vocab_bpe, pattern: str = GPT2_SPLIT_PATTERN):
        """Load GPT-2's published ``encoder.json`` + ``vocab.bpe`` pair; ids
        come out exactly as GPT-2's.  See ``gpt2_files.read_gpt2_files``."""
        byte_ids, merges, special_tokens = read_gpt2_files(encoder_json, vocab_bpe)
        return cls(pattern=pattern, merges=merges, special_tokens=special_tokens, byte_ids=byte_ids)

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")


def train_bpe(
    text: str,
    vocab_size: int,
    special_tokens=(),
    pattern: str = GPT2_SPLIT_PATTERN,
    progress: bool = True,
) -> BPETokenizer:
    """Train a GPT-2-style byte-level BPE tokenizer on any string."""
    return BPETokenizer(pattern=pattern).train(
        text, vocab_size, special_tokens=special_tokens, progress=progress
    )
