"""ClipCap (Mokady et al. 2021, "ClipCap: CLIP Prefix for Image Captioning"):
a frozen CLIP image embedding, mapped by a small network to a prefix of k
vectors that a GPT reads as if they were word embeddings, then continues
with the caption. Lecture S18.

    image embedding e (B, E)  -> mapping MLP: Linear(E, H) - tanh - Linear(H, k * D)
        -> prefix (B, k, D)
    [prefix ; token embeddings of the caption (B, T, D)] -> GPT's causal blocks -> logits

The loss is the GPT's next-token cross-entropy on the caption tokens only
(the prefix positions predict nothing). With the GPT frozen only the mapping
network learns (the paper's "transformer mapping, frozen GPT" row, here with
the MLP mapping); fine-tuning trains both. Captions are decoded greedily or
by beam search (``beam_search``: the k most likely partial captions kept at
every step, scored by their summed log-probability; a beam ends at the stop id).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.gpt import GPT
from minivl.tensor import Tensor, no_grad


@dataclass
class ClipCapConfig:
    embed_dim: int = 64  # CLIP's image embedding
    prefix_len: int = 4  # k
    hidden: int = 128  # the mapping network's hidden width
    vocab_size: int = 512
    max_len: int = 32
    dim: int = 64
    depth: int = 2
    num_heads: int = 4


class ClipCap(nn.Module):
    """A mapping network from CLIP's image embedding to a GPT prefix, and the GPT."""

    Config = ClipCapConfig

    def __init__(self, config: ClipCapConfig | None = None, **overrides):
        super().__init__()
        c = self.config = ClipCapConfig(**{**(vars(config) if config else {}), **overrides})
        self.fc1 = nn.Linear(c.embed_dim, c.hidden)
        self.fc2 = nn.Linear(c.hidden, c.prefix_len * c.dim)
        self.lm = GPT(vocab_size=c.vocab_size, max_len=c.max_len, dim=c.dim, depth=c.depth,
                      num_heads=c.num_heads)

    def prefix(self, embeddings) -> Tensor:
        """CLIP image embeddings ``(B, E)`` -> prefix ``(B, k, D)``."""
        e = np.asarray(embeddings, np.float32) if not isinstance(embeddings, Tensor) else embeddings
        c = self.config
        if e.ndim != 2 or e.shape[1] != c.embed_dim:
            raise ValueError(f"embeddings must have shape (B, {c.embed_dim}), got {tuple(e.shape)}")
        h = self.fc2(F.tanh(self.fc1(e)))  # (B, k * D)
        return h.reshape(len(e), c.prefix_len, c.dim)

    def forward(self, embeddings, ids) -> Tensor:
        """Logits ``(B, k + T, V)`` of the prefix followed by caption ids ``(B, T)``."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or len(ids) != len(embeddings):
            raise ValueError(f"ids must have shape (B, T) with B = {len(embeddings)}, got {ids.shape}")
        tokens = self.lm.transformer.embeddings.token(ids)  # (B, T, D)
        x = F.concat([self.prefix(embeddings), tokens], axis=1)  # (B, k + T, D)
        return self.lm.lm_head(self.lm.transformer.forward_embeddings(x))

    def loss(self, embeddings, ids, labels) -> Tensor:
        """Cross-entropy of caption tokens: position k - 1 + t predicts ``labels[:, t]``."""
        k = self.config.prefix_len
        logits = self(embeddings, ids)[:, k - 1:-1]  # (B, T, V)
        return F.cross_entropy(logits, np.asarray(labels), ignore_index=-100)

    def _log_probs(self, embeddings, ids):
        logits = self(embeddings, ids).numpy()[:, -1].astype(np.float64)  # (B, V)
        m = logits.max(-1, keepdims=True)
        return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))

    def greedy(self, embeddings, start_id, stop_id, max_tokens=16) -> list[list[int]]:
        """One caption per embedding, the most likely token at every step."""
        with no_grad():
            ids = np.full((len(embeddings), 1), start_id, np.int64)
            for _ in range(max_tokens):
                nxt = self._log_probs(embeddings, ids).argmax(-1)
                ids = np.concatenate([ids, nxt[:, None]], axis=1)
                if (ids[:, 1:] == stop_id).any(axis=1).all():  # ids[:, 0] is the start (may be the stop id)
                    break
        return [_cut(row[1:].tolist(), stop_id) for row in ids]

    def beam_search(self, embedding, start_id, stop_id, beams=3, max_tokens=16) -> list[int]:
        """The caption of one embedding ``(E,)`` found by beam search (summed log-probabilities)."""
        live = [([start_id], 0.0)]
        done = []
        with no_grad():
            for _ in range(max_tokens):
                ids = np.array([seq for seq, _ in live], np.int64)
                logp = self._log_probs(np.repeat(np.asarray(embedding)[None], len(live), 0), ids)
                options = [(seq + [int(t)], score + logp[i, t]) for i, (seq, score) in enumerate(live)
                           for t in np.argsort(-logp[i])[:beams]]
                options.sort(key=lambda o: -o[1])
                live = []
                for seq, score in options[:beams]:
                    (done if seq[-1] == stop_id else live).append((seq, score))
                if not live:
                    break
        best = max(done + live, key=lambda o: o[1])[0]
        return _cut(best[1:], stop_id)


def _cut(seq, stop_id):
    return seq[: seq.index(stop_id)] if stop_id in seq else seq
