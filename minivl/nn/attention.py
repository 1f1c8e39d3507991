"""Multi-head attention: self-attention, cross-attention and ViLBERT's
co-attention (S06) are all this one module.

Queries come from ``x (B, Nq, query_dim)``; keys and values come from
``context (B, Nk, kv_dim)`` (``x`` itself for self-attention). The two widths
may differ, which is what lets the text stream of ViLBERT query the visual
stream and vice versa. The projections are separate Linears named
``q_proj / k_proj / v_proj / out_proj`` (the names Hugging Face's CLIP uses).

``forward`` returns the output only. Under ``nn.record`` (``recording`` on)
the module also keeps the weights of its latest call in ``last_weights``.
"""

from __future__ import annotations

from minivl import functional as F
from minivl.nn.layers import Dropout, Linear
from minivl.nn.module import Module
from minivl.tensor import Tensor


class MultiHeadAttention(Module):
    def __init__(self, dim, num_heads, kv_dim=None, inner_dim=None, out_dim=None, bias=True, dropout=0.0):
        super().__init__()
        inner_dim = inner_dim or dim
        if inner_dim % num_heads:
            raise ValueError(f"attention width {inner_dim} is not divisible by num_heads={num_heads}")
        kv_dim = kv_dim or dim
        self.num_heads, self.head_dim = num_heads, inner_dim // num_heads
        self.q_proj = Linear(dim, inner_dim, bias)
        self.k_proj = Linear(kv_dim, inner_dim, bias)
        self.v_proj = Linear(kv_dim, inner_dim, bias)
        self.out_proj = Linear(inner_dim, out_dim or dim, bias)
        self.attn_dropout = dropout
        self.resid_dropout = Dropout(dropout)
        self.recording, self.last_weights = False, None  # see nn.record

    def _heads(self, t):
        B, N, _ = t.shape
        return t.reshape(B, N, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)  # (B, H, N, hd)

    def forward(self, x, context=None, key_padding_mask=None, causal=False, attn_mask=None, cache=None):
        """Attend from ``x`` to ``context`` (default: ``x``): ``(B, Nq, out_dim)``.

        ``cache`` (a dict, for autoregressive decoding) holds the keys and values
        of earlier positions; the new ones are appended and reused next call.
        """
        context = x if context is None else context
        if x.ndim != 3 or context.ndim != 3 or x.shape[0] != context.shape[0]:
            raise ValueError(f"attention expects (B, N, D) inputs, got x {x.shape} and context {context.shape}")
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(context))
        v = self._heads(self.v_proj(context))
        if cache is not None:
            if "k" in cache:
                k = F.concat([Tensor(cache["k"]), k], axis=2)
                v = F.concat([Tensor(cache["v"]), v], axis=2)
            cache["k"], cache["v"] = k.data, v.data
        out = F.scaled_dot_product_attention(
            q, k, v, key_padding_mask=key_padding_mask, causal=causal, attn_mask=attn_mask,
            dropout_p=self.attn_dropout, training=self.training, return_weights=self.recording,
        )
        if self.recording:
            out, self.last_weights = out  # weights (B, H, Nq, Nk)
        B, H, N, hd = out.shape
        return self.resid_dropout(self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, N, H * hd)))  # (B, Nq, D)

    def extra_repr(self):
        return f"heads={self.num_heads}, head_dim={self.head_dim}"
