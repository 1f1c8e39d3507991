"""CLIP's text wrapper around the byte-level BPE: ``<|startoftext|> BPE(text)
<|endoftext|>``, right-padded with 0 (Radford et al. 2021; lecture S14-S15).

Unlike ``BPETokenizer``, which maps a string to ids, ``CLIPTokenizer`` maps a
batch of strings to the fixed-width ``(ids, mask)`` arrays the text tower
reads, and guarantees the end-of-text token has the largest id, so the tower
can find it with ``argmax`` as OpenAI's does (``minivl.models.clip.eot_positions``).
"""

from __future__ import annotations

from minivl.data.loader import pad_sequences


class CLIPTokenizer:
    """``tokenizer(texts)`` -> ``ids (B, L)`` int64 and ``mask (B, L)`` bool (True = real token).

    Wraps a ``minivl.tokenizers.BPETokenizer`` that holds both special tokens,
    ``<|endoftext|>`` being its largest id (``train`` arranges that). Text too
    long for ``context_length`` is cut and keeps its end-of-text token.
    """

    SOT, EOT = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, bpe, context_length=32):
        for special in (self.SOT, self.EOT):
            if special not in bpe.special_tokens:
                raise ValueError(f"the BPE tokenizer needs the special token {special}")
        if context_length < 3:
            raise ValueError(f"context_length must leave room for one token between SOT and EOT, "
                             f"got {context_length}")
        self.bpe, self.context_length = bpe, context_length
        self.sot_id, self.eot_id = bpe.special_tokens[self.SOT], bpe.special_tokens[self.EOT]
        if self.eot_id != bpe.vocab_size - 1:
            raise ValueError(f"{self.EOT} must be the largest id ({bpe.vocab_size - 1}), got {self.eot_id}")

    @classmethod
    def train(cls, texts, vocab_size=320, context_length=32):
        """Learn a byte-level BPE on ``texts``; the two special tokens take the last ids."""
        from minivl.tokenizers.bpe import train_bpe

        bpe = train_bpe("\n".join(texts), vocab_size, special_tokens=[cls.SOT, cls.EOT], progress=False)
        return cls(bpe, context_length)

    @classmethod
    def load(cls, path, context_length=32):
        """A tokenizer from a BPE file written by ``save``."""
        from minivl.tokenizers.bpe import BPETokenizer

        return cls(BPETokenizer.load(path), context_length)

    def save(self, path):
        self.bpe.save(path)

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size

    def encode(self, text: str) -> list[int]:
        body = self.bpe.encode(text)[: self.context_length - 2]
        return [self.sot_id, *body, self.eot_id]

    def __call__(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        return pad_sequences([self.encode(t) for t in texts], pad_id=0)
