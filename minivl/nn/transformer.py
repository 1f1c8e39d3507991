"""The one transformer block every model shares (BERT, GPT, ViT, the CLIP
towers, the LLaVA decoder, the DALL-E prior), and a stack of them.

The models differ only in the options:

* ``norm_first=True`` (pre-LN: GPT-2, ViT, CLIP):  x + Attn(LN(x)); x + MLP(LN(x))
* ``norm_first=False`` (post-LN: BERT):            LN(x + Attn(x)); LN(x + MLP(x))
* the mask (``causal`` for GPT, padding for BERT) and the MLP activation.
"""

from __future__ import annotations

from minivl.nn.activations import get_activation
from minivl.nn.attention import MultiHeadAttention
from minivl.nn.layers import Dropout, LayerNorm, Linear, ModuleList
from minivl.nn.module import Module


class MLP(Module):
    """Linear -> activation -> Linear (-> dropout); 4x width in transformers."""

    def __init__(self, dim, hidden_dim, out_dim=None, activation="gelu", dropout=0.0, bias=True):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim, bias)
        self.fc2 = Linear(hidden_dim, out_dim or dim, bias)
        self.activation = activation
        self.act = get_activation(activation)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.fc2(self.act(self.fc1(x))))

    def extra_repr(self):
        return f"activation={self.activation!r}"


class TransformerBlock(Module):
    """Self-attention and an MLP, each with a residual connection and a LayerNorm."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, norm_first=True, activation="gelu",
                 dropout=0.0, eps=1e-5, bias=True, mlp_dim=None):
        """``mlp_dim`` sets the hidden width exactly (a checkpoint's intermediate_size);
        otherwise it is ``int(dim * mlp_ratio)``."""
        super().__init__()
        self.norm_first = norm_first
        self.ln_1 = LayerNorm(dim, eps)
        self.attn = MultiHeadAttention(dim, num_heads, bias=bias, dropout=dropout)
        self.ln_2 = LayerNorm(dim, eps)
        self.mlp = MLP(dim, mlp_dim or int(dim * mlp_ratio), activation=activation, dropout=dropout, bias=bias)

    def forward(self, x, key_padding_mask=None, causal=False, attn_mask=None, cache=None,
                return_weights=False):
        """``x (B, N, D)`` -> ``(B, N, D)`` (and the attention weights if asked)."""
        kw = dict(key_padding_mask=key_padding_mask, causal=causal, attn_mask=attn_mask,
                  cache=cache, return_weights=return_weights)
        if self.norm_first:
            a = self.attn(self.ln_1(x), **kw)
            a, w = a if return_weights else (a, None)
            x = x + a
            x = x + self.mlp(self.ln_2(x))
        else:
            a = self.attn(x, **kw)
            a, w = a if return_weights else (a, None)
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.mlp(x))
        return (x, w) if return_weights else x


class Transformer(Module):
    """``depth`` TransformerBlocks; can hand back every layer's hidden states.

    ``forward`` returns the last hidden state, or with ``return_hidden=True`` a
    list ``[input, after block 1, ..., after block depth]`` (LLaVA reads the
    penultimate one, S29), and with ``return_weights=True`` each block's
    attention weights (for attention maps and rollout).
    """

    def __init__(self, dim, depth, num_heads, **block_options):
        super().__init__()
        self.blocks = ModuleList(TransformerBlock(dim, num_heads, **block_options) for _ in range(depth))

    def forward(self, x, key_padding_mask=None, causal=False, attn_mask=None, caches=None,
                return_hidden=False, return_weights=False):
        hidden, weights = [x], []
        for i, block in enumerate(self.blocks):
            out = block(x, key_padding_mask=key_padding_mask, causal=causal, attn_mask=attn_mask,
                        cache=None if caches is None else caches[i], return_weights=return_weights)
            if return_weights:
                out, w = out
                weights.append(w)
            x = out
            hidden.append(x)
        if not (return_hidden or return_weights):
            return x
        result = (x,)
        if return_hidden:
            result += (hidden,)
        if return_weights:
            result += (weights,)
        return result
