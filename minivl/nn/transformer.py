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

    def forward(self, x, key_padding_mask=None, causal=False, attn_mask=None, cache=None):
        """``x (B, N, D)`` -> ``(B, N, D)``."""
        mask = dict(key_padding_mask=key_padding_mask, causal=causal, attn_mask=attn_mask, cache=cache)
        if self.norm_first:
            x = x + self.attn(self.ln_1(x), **mask)
            x = x + self.mlp(self.ln_2(x))
        else:
            x = self.ln_1(x + self.attn(x, **mask))
            x = self.ln_2(x + self.mlp(x))
        return x


class Transformer(Module):
    """``depth`` TransformerBlocks: ``(B, N, D)`` -> the last hidden state ``(B, N, D)``.

    Under ``nn.record`` (``recording`` on) it also keeps the list
    ``[input, after block 1, ..., after block depth]`` in ``last_hidden``
    (LLaVA reads the penultimate one, S29).

    ``attn_mask`` is one mask for every block, or a list or tuple with one
    mask (or None) per block: the DALL-E prior gives its layers different
    sparse patterns (row, column, convolutional; S24).
    """

    def __init__(self, dim, depth, num_heads, **block_options):
        super().__init__()
        self.blocks = ModuleList(TransformerBlock(dim, num_heads, **block_options) for _ in range(depth))
        self.recording, self.last_hidden = False, None  # see nn.record

    def forward(self, x, key_padding_mask=None, causal=False, attn_mask=None, caches=None):
        per_block = isinstance(attn_mask, (list, tuple))
        if per_block and len(attn_mask) != len(self.blocks):
            raise ValueError(f"attn_mask holds {len(attn_mask)} masks for {len(self.blocks)} blocks")
        hidden = [x]
        for i, block in enumerate(self.blocks):
            x = block(x, key_padding_mask=key_padding_mask, causal=causal,
                      attn_mask=attn_mask[i] if per_block else attn_mask,
                      cache=None if caches is None else caches[i])
            hidden.append(x)
        if self.recording:
            self.last_hidden = hidden
        return x
