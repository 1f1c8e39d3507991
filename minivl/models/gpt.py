"""GPT (Radford et al., 2018; GPT-2, 2019): a causal transformer trained to
predict the next token, then sampled from one token at a time. Lecture S01.

    ids (B, N) -> CausalTextEncoder (token + position embeddings, pre-LN
    blocks where token t sees tokens <= t, final LayerNorm ln_f) -> hidden
    (B, N, D) -> lm_head, whose weight *is* the token-embedding matrix -> logits

The loss at position t is the cross-entropy of the logits against token
t + 1. ``generate`` feeds the model its own samples; with ``use_cache`` each
block keeps the keys and values of the tokens already seen, so each new token
costs one position of work instead of the whole prefix, and the tokens come
out exactly as without the cache.

``GPT.from_hf`` loads a Hugging Face ``GPT2LMHeadModel`` state dict through
the rules table ``HF_RULES`` (``minivl/models/hf.py``): GPT-2 stores its
projections as ``Conv1D`` with weights (in, out), so each is transposed into
our Linear's (out, in), and ``c_attn`` is split into query, key and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.hf import Rule, hf_activation, hf_setting, load_hf
from minivl.models.text import CausalTextEncoder, init_weights, sample_next
from minivl.tensor import no_grad


@dataclass
class GPTConfig:
    vocab_size: int = 512
    max_len: int = 64  # context length (GPT-2: 1024)
    dim: int = 64  # GPT-2 small: 768
    depth: int = 2  # GPT-2 small: 12
    num_heads: int = 4  # GPT-2 small: 12
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    eps: float = 1e-5
    activation: str = "gelu_tanh"  # GPT-2's "gelu_new"


class GPT(nn.Module):
    """A causal text encoder with a tied language-model head."""

    Config = GPTConfig

    def __init__(self, config: GPTConfig | None = None, **overrides):
        super().__init__()
        c = self.config = GPTConfig(**{**(vars(config) if config else {}), **overrides})
        self.transformer = CausalTextEncoder(c.vocab_size, c.max_len, c.dim, c.depth, c.num_heads,
                                             c.mlp_ratio, c.activation, c.dropout, c.eps)
        self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.embeddings.token.weight  # tied: one matrix
        init_weights(self, residual_depth=c.depth)

    def forward(self, ids, key_padding_mask=None, caches=None):
        """Next-token logits ``(B, N, V)``: row t scores token t + 1."""
        return self.lm_head(self.transformer(ids, key_padding_mask, caches))

    def loss(self, ids, key_padding_mask=None):
        """Mean next-token cross-entropy over ``ids (B, N)`` (targets: ids shifted by one).

        With ``key_padding_mask`` (True = real token) padded targets are skipped.
        """
        ids = np.asarray(ids)
        logits = self(ids[:, :-1], None if key_padding_mask is None else key_padding_mask[:, :-1])
        targets = ids[:, 1:]
        if key_padding_mask is not None:
            targets = np.where(np.asarray(key_padding_mask)[:, 1:], targets, -100)
        return F.cross_entropy(logits, targets, ignore_index=-100)

    def generate(self, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 use_cache=True, generator=None, stop_id=None):
        """Continue ``prompt_ids (B, N)`` by ``max_new_tokens`` tokens -> ``(B, N + new)``.

        ``temperature=0`` is greedy; see ``sample_next`` for top-k / top-p.
        The context is the last ``max_len`` tokens: past that the cache is
        rebuilt from that window, exactly what the uncached path computes.
        Stops early once every row has produced ``stop_id``.
        """
        ids = np.asarray(prompt_ids)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"prompt_ids must have shape (B, N) with N >= 1, got {ids.shape}")
        max_len, was_training = self.config.max_len, self.training
        self.eval()
        caches, done = None, np.zeros(len(ids), dtype=bool)
        try:
            with no_grad():
                for _ in range(max_new_tokens):
                    if not use_cache:
                        logits = self(ids[:, -max_len:])
                    elif caches is None or ids.shape[1] > max_len:
                        caches = self.transformer.new_caches()  # (re)fill from the window
                        logits = self(ids[:, -max_len:], caches=caches)
                    else:
                        logits = self(ids[:, -1:], caches=caches)  # only the newest token
                    next_id = sample_next(logits.numpy()[:, -1], temperature, top_k, top_p, generator)
                    ids = np.concatenate([ids, next_id[:, None].astype(ids.dtype)], axis=1)
                    if stop_id is not None:
                        done |= next_id == stop_id
                        if done.all():
                            break
        finally:
            self.train(was_training)
        return ids

    @classmethod
    def from_hf(cls, state_dict, hf_config):
        """A GPT holding the weights of a Hugging Face ``GPT2LMHeadModel``, in eval mode."""
        get = lambda name, default=None: hf_setting(hf_config, name, default)
        activation = hf_activation(get("activation_function", "gelu_new"),
                                   ("gelu_new", "gelu_pytorch_tanh", "gelu"))
        if not get("scale_attn_weights", True) or get("scale_attn_by_inverse_layer_idx", False):
            raise ValueError("only GPT-2's standard 1/sqrt(head_dim) attention scaling is supported")
        dim = get("n_embd")
        config = GPTConfig(
            vocab_size=get("vocab_size"), max_len=get("n_positions"), dim=dim,
            depth=get("n_layer"), num_heads=get("n_head"), mlp_ratio=get("n_inner", 4 * dim) / dim,
            dropout=get("resid_pdrop", 0.0), eps=get("layer_norm_epsilon", 1e-5),
            activation=activation,
        )
        return load_hf(cls(config), state_dict, HF_RULES)


# GPT2LMHeadModel names (``transformer.`` prefix; GPT2Model has none) -> ours.
# GPT-2's projections are Conv1D, weights (in, out): transposed into Linear's
# (out, in); c_attn holds q, k and v side by side and is split in three.
_H, _B = "{transformer.|}h.{i}", "transformer.encoder.blocks.{i}"
HF_RULES = [
    Rule("{transformer.|}wte.weight", "transformer.embeddings.token.weight"),
    Rule("{transformer.|}wpe.weight", "transformer.embeddings.position.weight"),
    Rule(_H + ".ln_1.{p}", _B + ".ln_1.{p}"),
    Rule(_H + ".ln_2.{p}", _B + ".ln_2.{p}"),
    Rule(_H + ".attn.c_attn.{p}", (_B + ".attn.q_proj.{p}", _B + ".attn.k_proj.{p}", _B + ".attn.v_proj.{p}"),
         axis=-1, transpose=True),
    Rule(_H + ".attn.c_proj.{p}", _B + ".attn.out_proj.{p}", transpose=True),
    Rule(_H + ".mlp.c_fc.{p}", _B + ".mlp.fc1.{p}", transpose=True),
    Rule(_H + ".mlp.c_proj.{p}", _B + ".mlp.fc2.{p}", transpose=True),
    Rule("{transformer.|}ln_f.{p}", "transformer.ln_f.{p}"),
    Rule("lm_head.weight", None),  # tied to wte
    Rule(_H + ".attn.{bias|masked_bias}", None),  # causal-mask buffers in older files
]
