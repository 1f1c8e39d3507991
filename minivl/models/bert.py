"""BERT (Devlin et al., 2019): a bidirectional transformer encoder pretrained
by masked language modelling. Lecture S01; ViLBERT's text stream (S03, S08).

    [CLS] sentence A [SEP] sentence B [SEP]  ->  token + position + segment
    embeddings -> LayerNorm -> post-LN blocks, every token attending to every
    real token (padding masked out) -> hidden states (B, N, D)

* the pooler: Linear + tanh on the [CLS] hidden state, one vector per input;
* the MLM head: dense + GELU + LayerNorm, then a decoder whose weight *is*
  the word-embedding matrix (tied) plus its own bias, giving vocabulary logits;
* ``mask_tokens``: 15% of the non-special tokens are chosen; of those 80%
  become [MASK], 10% a random token, 10% stay as they are; only the chosen
  positions carry labels (-100 elsewhere, ignored by the loss).

Blocks are ``minivl.nn.TransformerBlock`` with ``norm_first=False`` (post-LN,
LN(x + sublayer(x)), as the original), GELU in its erf form, LayerNorm eps
1e-12. ``BERT.from_hf`` loads a Hugging Face ``BertForMaskedLM`` /
``BertModel`` state dict through the rules table ``HF_RULES``
(``minivl/models/hf.py``): a rename, no transposes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.hf import Rule, hf_activation, hf_setting, load_hf
from minivl.models.inputs import check_ids, check_like_ids
from minivl.models.text import TokenPositionEmbedding, init_weights

IGNORE_INDEX = -100  # label of the positions the MLM loss skips


@dataclass
class BertConfig:
    vocab_size: int = 512
    max_len: int = 64  # positions (BERT-base: 512)
    type_vocab_size: int = 2  # segments A and B
    dim: int = 64  # BERT-base: 768
    depth: int = 2  # BERT-base: 12
    num_heads: int = 4  # BERT-base: 12
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    eps: float = 1e-12


class BertEmbeddings(TokenPositionEmbedding):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, vocab_size, max_len, type_vocab_size, dim, dropout=0.1, eps=1e-12):
        super().__init__(vocab_size, max_len, dim)
        self.segment = nn.Embedding(type_vocab_size, dim)
        self.ln = nn.LayerNorm(dim, eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids, segment_ids=None):
        x = super().forward(ids)  # (B, N, D)
        if segment_ids is None:
            segment_ids = np.zeros(ids.shape, dtype=np.int64)  # everything is sentence A
        return self.drop(self.ln(x + self.segment(segment_ids)))


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder tied to the word embeddings (+ own bias)."""

    def __init__(self, dim, word_embeddings, eps=1e-12):
        super().__init__()
        vocab_size = word_embeddings.shape[0]
        self.dense = nn.Linear(dim, dim)
        self.ln = nn.LayerNorm(dim, eps)
        self.decoder = nn.Linear(dim, vocab_size)
        self.decoder.weight = word_embeddings  # the same Parameter: one matrix, two uses

    def forward(self, hidden):
        return self.decoder(self.ln(F.gelu(self.dense(hidden))))  # (B, N, V)


class BERT(nn.Module):
    """The encoder with its pooler and MLM head; see the module docstring."""

    Config = BertConfig

    def __init__(self, config: BertConfig | None = None, **overrides):
        super().__init__()
        c = self.config = BertConfig(**{**(vars(config) if config else {}), **overrides})
        self.embeddings = BertEmbeddings(c.vocab_size, c.max_len, c.type_vocab_size, c.dim,
                                         c.dropout, c.eps)
        self.encoder = nn.Transformer(c.dim, c.depth, c.num_heads, mlp_ratio=c.mlp_ratio,
                                      norm_first=False, activation="gelu", dropout=c.dropout,
                                      eps=c.eps)
        self.pooler = nn.Linear(c.dim, c.dim)
        self.mlm = MaskedLMHead(c.dim, self.embeddings.token.weight, c.eps)
        init_weights(self)

    def forward(self, ids, segment_ids=None, key_padding_mask=None):
        """Hidden states ``(B, N, D)`` of ``ids (B, N)`` (an integer ndarray).

        ``segment_ids (B, N)``: 0 for sentence A, 1 for B. ``key_padding_mask
        (B, N)``: True for real tokens, False for padding (no token attends to
        padding). Every layer's states and attention weights can be recorded
        with ``nn.record``.
        """
        ids = check_ids(ids, self.config.vocab_size)
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"ids {ids.shape}: {ids.shape[1]} tokens exceed max_len={self.config.max_len}")
        segment_ids = check_like_ids(segment_ids, ids, "segment_ids")
        if segment_ids is not None:
            check_ids(segment_ids, self.config.type_vocab_size, "segment_ids")
        key_padding_mask = check_like_ids(key_padding_mask, ids, "key_padding_mask", bool)
        x = self.embeddings(ids, segment_ids)  # (B, N, D)
        return self.encoder(x, key_padding_mask=key_padding_mask)

    def pool(self, hidden):
        """The [CLS] summary: tanh(Linear(hidden[:, 0])) -> ``(B, D)``."""
        return F.tanh(self.pooler(hidden[:, 0]))

    def mlm_logits(self, ids, segment_ids=None, key_padding_mask=None):
        """Vocabulary logits ``(B, N, V)`` at every position."""
        return self.mlm(self(ids, segment_ids, key_padding_mask))

    @classmethod
    def from_hf(cls, state_dict, hf_config):
        """A BERT holding the weights of a Hugging Face ``BertForMaskedLM`` (or ``BertModel``),
        in eval mode.

        Parts the checkpoint lacks keep their fresh initialisation:
        ``BertForMaskedLM`` has no pooler, ``BertModel`` no MLM head.
        """
        get = lambda name, default=None: hf_setting(hf_config, name, default)
        hf_activation(get("hidden_act", "gelu"), ("gelu",))  # erf GELU only
        dim = get("hidden_size")
        config = BertConfig(
            vocab_size=get("vocab_size"), max_len=get("max_position_embeddings"),
            type_vocab_size=get("type_vocab_size", 2), dim=dim, depth=get("num_hidden_layers"),
            num_heads=get("num_attention_heads"), mlp_ratio=get("intermediate_size") / dim,
            dropout=get("hidden_dropout_prob", 0.1), eps=get("layer_norm_eps", 1e-12),
        )
        return load_hf(cls(config), state_dict, HF_RULES, optional=("pooler.", "mlm."))


# BertForMaskedLM names (``bert.`` prefix; BertModel has none) -> ours. Both
# store Linear weights as (out, in): a rename, no transposes.
_L, _B = "{bert.|}encoder.layer.{i}", "encoder.blocks.{i}"
HF_RULES = [
    Rule("{bert.|}embeddings.word_embeddings.weight", "embeddings.token.weight"),
    Rule("{bert.|}embeddings.position_embeddings.weight", "embeddings.position.weight"),
    Rule("{bert.|}embeddings.token_type_embeddings.weight", "embeddings.segment.weight"),
    Rule("{bert.|}embeddings.LayerNorm.{p}", "embeddings.ln.{p}"),
    Rule(_L + ".attention.self.query.{p}", _B + ".attn.q_proj.{p}"),
    Rule(_L + ".attention.self.key.{p}", _B + ".attn.k_proj.{p}"),
    Rule(_L + ".attention.self.value.{p}", _B + ".attn.v_proj.{p}"),
    Rule(_L + ".attention.output.dense.{p}", _B + ".attn.out_proj.{p}"),
    Rule(_L + ".attention.output.LayerNorm.{p}", _B + ".ln_1.{p}"),
    Rule(_L + ".intermediate.dense.{p}", _B + ".mlp.fc1.{p}"),
    Rule(_L + ".output.dense.{p}", _B + ".mlp.fc2.{p}"),
    Rule(_L + ".output.LayerNorm.{p}", _B + ".ln_2.{p}"),
    Rule("{bert.|}pooler.dense.{p}", "pooler.{p}"),
    Rule("cls.predictions.transform.dense.{p}", "mlm.dense.{p}"),
    Rule("cls.predictions.transform.LayerNorm.{p}", "mlm.ln.{p}"),
    Rule("cls.predictions.bias", "mlm.decoder.bias"),
    Rule("cls.predictions.decoder.{p}", None),  # tied: the word embeddings and the bias above
    Rule("{bert.|}embeddings.position_ids", None),  # an index buffer older files saved
]


def mask_tokens(ids, special_ids, vocab_size, mask_id, rng, prob=0.15, id_probs=None):
    """BERT's masked-LM corruption of ``ids (B, N)``.

    Each token not in ``special_ids`` ([CLS], [SEP], [PAD], ...) is chosen with
    probability ``prob``. A chosen token becomes ``mask_id`` with probability
    0.8, a random non-special id with 0.1, and stays itself with 0.1, so the
    model cannot tell from the input which tokens it will be asked about.
    ``id_probs`` ``{token id: probability}``: those ids are chosen with their own
    probability instead of ``prob`` (ViLBERT's pretraining asks more often about
    size and relation words; the 80/10/10 split is the same). The draws from
    ``rng`` do not depend on ``id_probs``.
    Returns ``(inputs, labels)``: labels hold the original id at chosen
    positions and -100 everywhere else.
    """
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mask_tokens: ids must be integers, got dtype {ids.dtype}")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"mask_tokens: prob must be in [0, 1], got {prob}")
    rate = np.full(ids.shape, float(prob))
    for token, p in (id_probs or {}).items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mask_tokens: id_probs[{token}] must be in [0, 1], got {p}")
        rate[ids == token] = p
    special = np.asarray(sorted(set(int(i) for i in special_ids)), dtype=np.int64)
    ordinary = np.setdiff1d(np.arange(vocab_size), special)  # ids a random swap may pick
    if len(ordinary) == 0:
        raise ValueError(f"mask_tokens: every id of vocab_size={vocab_size} is special")
    chosen = (rng.random(ids.shape) < rate) & ~np.isin(ids, special)
    labels = np.where(chosen, ids, IGNORE_INDEX)
    action = rng.random(ids.shape)  # < 0.8: [MASK]; < 0.9: random; else unchanged
    inputs = ids.copy()
    inputs[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = ordinary[rng.integers(len(ordinary), size=int(swap.sum()))]
    return inputs, labels


def mlm_loss(logits, labels):
    """Cross-entropy over the chosen positions only (labels of -100 are skipped)."""
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def mlm_accuracy(logits, labels):
    """Fraction of chosen positions whose argmax prediction is the original token."""
    chosen = np.asarray(labels) != IGNORE_INDEX
    predicted = logits.numpy().argmax(axis=-1)  # logits: the Tensor mlm_logits returns
    return float((predicted[chosen] == np.asarray(labels)[chosen]).mean()) if chosen.any() else 0.0
