"""A small offline text corpus for pretraining BERT and GPT (lecture S01).

BERT was pretrained on BooksCorpus + Wikipedia and GPT-2 on WebText; here the
text is the shapes world's captions, so the language models learn the same
words that CLIP, ViLBERT and LLaVA later tie to images. Each *document* is
two true captions of one random scene ("a red circle is left of a blue
square." / "one circle and one square."): a sentence pair for BERT's
segments A and B, and a short text whose second sentence is predictable from
the first for GPT. A byte-level BPE tokenizer (``minivl.tokenizers``) is
trained on the training documents, with the special tokens both models need.

* GPT reads one long stream ``doc <|endoftext|> doc <|endoftext|> ...`` in
  random windows of ``block_size + 1`` tokens (nanoGPT's batching: no padding).
* BERT reads ``[CLS] A [SEP] B [SEP]`` per document, padded with [PAD] to the
  longest in the batch, with a key-padding mask (True = real token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.captions import sample_caption
from minivl.data.loader import DataLoader, pad_sequences
from minivl.data.shapes import sample_scenes
from minivl.tokenizers import BPETokenizer, train_bpe
from minivl.train import forever

SPECIAL_TOKENS = ("<|endoftext|>", "[PAD]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class TextCorpus:
    """Training and validation documents and the tokenizer trained on them."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    tokenizer: BPETokenizer

    def special(self, name: str) -> int:
        """The id of a special token, e.g. ``corpus.special("[MASK]")``."""
        return self.tokenizer.special_tokens[name]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def caption_documents(n: int, rng: np.random.Generator, max_objects: int = 3) -> list[tuple[str, str]]:
    """``n`` documents, each two captions of the same random scene."""
    scenes = sample_scenes(n, rng, max_objects=max_objects)
    return [(sample_caption(s, rng).text, sample_caption(s, rng).text) for s in scenes]


def build_corpus(n_train: int = 2000, n_val: int = 200, vocab_size: int = 400, seed: int = 0,
                 progress: bool = False) -> TextCorpus:
    """Generate documents (seeded) and train a BPE tokenizer on the training part.

    ``vocab_size`` counts the 256 bytes, the merges and the special tokens; the
    captions have few distinct words, so training may stop with fewer merges.
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need n_train >= 1 and n_val >= 1, got {n_train} and {n_val}")
    rng = np.random.default_rng(seed)
    train, val = caption_documents(n_train, rng), caption_documents(n_val, rng)
    text = "\n".join(" ".join(doc) for doc in train)
    tokenizer = train_bpe(text, vocab_size, special_tokens=SPECIAL_TOKENS, progress=progress)
    return TextCorpus(train, val, tokenizer)


# --------------------------------------------------------------------------- GPT


def lm_stream(docs, tokenizer: BPETokenizer) -> np.ndarray:
    """All documents as one id stream, each followed by <|endoftext|> -> ``(T,)``.

    A document is a tuple of strings (joined by spaces, then encoded) or an
    array of ids already encoded (LLaVA's chats, tokenized piece by piece).
    """
    eot = tokenizer.special_tokens["<|endoftext|>"]
    ids = []
    for doc in docs:
        ids.extend(doc.tolist() if isinstance(doc, np.ndarray) else tokenizer.encode(" ".join(doc)))
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


def lm_batches(stream: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator):
    """Yield ``(batch_size, block_size + 1)`` random windows of ``stream`` forever."""
    if len(stream) < block_size + 2:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for block_size={block_size}")
    offsets = np.arange(block_size + 1)
    while True:
        starts = rng.integers(0, len(stream) - block_size - 1, size=batch_size)
        yield stream[starts[:, None] + offsets]  # (B, block_size + 1)


# --------------------------------------------------------------------------- BERT


def sentence_pairs(docs, tokenizer: BPETokenizer) -> dict[str, list[np.ndarray]]:
    """``[CLS] A [SEP] B [SEP]`` per document: ``{"ids": [...], "segment_ids": [...]}``,
    segment 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``."""
    cls, sep = tokenizer.special_tokens["[CLS]"], tokenizer.special_tokens["[SEP]"]
    pairs = {"ids": [], "segment_ids": []}
    for a, b in docs:
        first = [cls, *tokenizer.encode(a), sep]
        second = [*tokenizer.encode(" " + b), sep]
        pairs["ids"].append(np.asarray(first + second, dtype=np.int64))
        pairs["segment_ids"].append(np.asarray([0] * len(first) + [1] * len(second), dtype=np.int64))
    return pairs


def collate_pairs(pairs: dict, pad_id: int) -> dict:
    """All of ``pairs`` as one padded batch: ``ids``, ``segment_ids``, ``key_padding_mask`` (B, N)."""
    ids, mask = pad_sequences(pairs["ids"], pad_id)
    segments, _ = pad_sequences(pairs["segment_ids"], 0)
    return {"ids": ids, "segment_ids": segments, "key_padding_mask": mask}


def pair_batches(pairs: dict, batch_size: int, pad_id: int, seed: int = 0):
    """Yield shuffled padded batches of sentence pairs forever (a new order each epoch)."""
    loader = DataLoader(pairs, batch_size, drop_last=True, seed=seed,
                        pad={"ids": pad_id, "segment_ids": 0})
    if len(loader) == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {loader.n} sentence pairs")
    for batch in forever(lambda: iter(loader)):
        yield {"ids": batch["ids"], "segment_ids": batch["segment_ids"],
               "key_padding_mask": batch["ids_mask"]}
