"""What the text transformers share: token + position embeddings, the causal
text encoder (GPT's body, reused by CLIP's text tower), and next-token sampling.

Lecture S01 ("Evolutions of transformers"): BERT and GPT are the same stack
of blocks (``minivl.nn.Transformer``) read two ways. BERT lets every token
see every other token; GPT lets token t see only tokens <= t, so it can be
trained to predict token t + 1 and then generate text one token at a time.

* ``TokenPositionEmbedding``: a learned vector per token id plus a learned
  vector per position (GPT-2's ``wte + wpe``; BERT adds a segment vector).
* ``CausalTextEncoder``: embeddings -> dropout -> pre-LN causal blocks ->
  final LayerNorm (GPT-2's ``transformer``, CLIP's text transformer); it
  returns hidden states ``(B, N, D)`` and leaves the head to the model.
* ``sample_next``: greedy, temperature, top-k and nucleus (top-p) sampling
  (Holtzman et al., 2020) from one row of logits per sequence.
"""

from __future__ import annotations

import numpy as np

from minivl import nn
from minivl.models.inputs import check_ids, check_like_ids


class TokenPositionEmbedding(nn.Module):
    """``token[ids] + position[start .. start + N - 1]`` -> ``(B, N, D)``."""

    def __init__(self, vocab_size, max_len, dim):
        super().__init__()
        self.max_len = max_len
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_len, dim)

    def forward(self, ids, start=0):
        """``ids (B, N)``, already checked by the model (``minivl/models/inputs.py``)."""
        positions = np.arange(start, start + ids.shape[1])  # (N,), broadcast over the batch
        return self.token(ids) + self.position(positions)  # (B, N, D)


class CausalTextEncoder(nn.Module):
    """A GPT-style decoder-only transformer body, without an output head.

    ``forward(ids)`` returns the final hidden states ``(B, N, D)`` (after
    ``ln_f``). GPT puts a tied LM head on them; CLIP reads the one at the
    end-of-text token. Pass ``caches`` (from ``new_caches()``) to decode one
    token at a time: each block keeps the keys and values it has seen, and
    the positions continue from where the cache ends.
    """

    def __init__(self, vocab_size, max_len, dim, depth, num_heads, mlp_ratio=4.0,
                 activation="gelu_tanh", dropout=0.0, eps=1e-5):
        super().__init__()
        self.embeddings = TokenPositionEmbedding(vocab_size, max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Transformer(dim, depth, num_heads, mlp_ratio=mlp_ratio, norm_first=True,
                                      activation=activation, dropout=dropout, eps=eps)
        self.ln_f = nn.LayerNorm(dim, eps)

    @property
    def max_len(self):
        return self.embeddings.max_len

    def new_caches(self):
        """One empty key/value cache per block."""
        return [{} for _ in self.encoder.blocks]

    def forward(self, ids, key_padding_mask=None, caches=None, attn_mask=None):
        """Hidden states ``(B, N, D)`` of ``ids (B, N)`` (an integer ndarray).

        ``key_padding_mask (B, N)``: True for real tokens. ``attn_mask``: a
        boolean ``(N, N_keys)`` mask (True = may attend), or one per block,
        applied on top of the causal mask (the DALL-E prior's sparse patterns).
        Every layer's states and attention weights can be recorded with ``nn.record``.
        """
        ids = check_ids(ids, self.embeddings.token.num_embeddings)
        key_padding_mask = check_like_ids(key_padding_mask, ids, "key_padding_mask", bool)
        start = self._start(ids.shape, caches)
        x = self.drop(self.embeddings(ids, start))  # (B, N, D)
        x = self.encoder(x, key_padding_mask=key_padding_mask, causal=True, attn_mask=attn_mask,
                         caches=caches)
        return self.ln_f(x)  # (B, N, D)

    def _start(self, shape, caches, what="ids"):
        start = 0 if caches is None or "k" not in caches[0] else caches[0]["k"].shape[2]
        if start + shape[1] > self.max_len:
            raise ValueError(f"{what} {tuple(shape)}: {shape[1]} tokens from position {start} "
                             f"exceed max_len={self.max_len}")
        return start

    def forward_embeddings(self, embeds, caches=None):
        """Hidden states ``(B, N, D)`` of token embeddings ``embeds (B, N, D)`` given directly.

        The path LLaVA takes (S29): its sequence mixes looked-up token vectors
        with projected image patches, so the embedding lookup happens outside;
        the position embeddings, the causal blocks and ``ln_f`` are the same.
        """
        D = self.embeddings.token.dim
        if embeds.ndim != 3 or embeds.shape[-1] != D:
            raise ValueError(f"embeds must have shape (B, N, {D}), got {tuple(embeds.shape)}")
        start = self._start(embeds.shape, caches, "embeds")
        x = self.drop(embeds + self.embeddings.position(np.arange(start, start + embeds.shape[1])))
        x = self.encoder(x, causal=True, caches=caches)  # (B, N, D)
        return self.ln_f(x)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Pick one token id per row of ``logits (B, V)`` (a NumPy array).

    ``temperature=0`` is greedy (argmax). Otherwise the logits are divided by
    the temperature, cut to the ``top_k`` largest and/or to the smallest set
    whose probability reaches ``top_p``, and one id is drawn per row with
    ``generator`` (a ``np.random.Generator``; the global minivl one if None).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"sample_next expects logits of shape (B, V), got {logits.shape}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = logits / temperature
    V = logits.shape[1]
    if top_k is not None:
        if not 1 <= top_k:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = np.sort(logits, axis=-1)[:, -min(top_k, V)][:, None]  # (B, 1)
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, V)
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        # Keep a token if the tokens ranked above it have not yet reached top_p
        # (so the most likely token is always kept).
        keep_sorted = np.cumsum(sorted_p, axis=-1) - sorted_p < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    if generator is None:
        from minivl.random import rng

        generator = rng()
    # Inverse CDF, one uniform draw per row: the first id whose cumulative
    # probability exceeds u (a strict step, so never an id of probability 0).
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    u = generator.random((probs.shape[0], 1)) * cdf[:, -1:]
    return (cdf <= u).sum(axis=-1)


def init_weights(model, std=0.02, residual_depth=None):
    """BERT / GPT-2 initialisation, in place: every Linear weight N(0, std^2), biases 0.

    With ``residual_depth`` (GPT-2, section 2.3), the projections that write
    into the residual stream (``attn.out_proj``, ``mlp.fc2``) get std
    ``std / sqrt(2 * residual_depth)``, so the stream's variance does not grow
    with depth. Writes into the existing arrays, so tied weights stay tied.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            s = std
            if residual_depth and name.endswith(("attn.out_proj", "mlp.fc2")):
                s = std / np.sqrt(2 * residual_depth)
            m.weight.data[...] = nn.init.normal(m.weight.shape, s)
            if m.bias is not None:
                m.bias.data[...] = 0.0
    return model
