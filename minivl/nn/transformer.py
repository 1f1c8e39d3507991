"""The one transformer block every model shares (BERT, GPT, ViT, the CLIP
towers, the LLaVA decoder, the DALL-E prior), and a stack of them.

The models differ only in the options:

* ``norm_first=True`` (pre-LN: GPT-2, ViT, CLIP):  x + Attn(LN(x)); x + MLP(LN(x))
* ``norm_first=False`` (post-LN: BERT):            LN(x + Attn(x)); LN(x + MLP(x))
* the mask (``causal`` for GPT, padding for BERT) and the MLP activation.

With ``context`` the attention reads its keys and values from another
sequence (``kv_dim`` wide, through an ``attn_dim``-wide attention): half of
ViLBERT's co-attention block (S06, ``minivl/nn/coattention.py``).
"""

from __future__ import annotations

from minivl import backend
from minivl import functional as F
from minivl.nn.activations import get_activation
from minivl.nn.attention import MultiHeadAttention
from minivl.nn.layers import Dropout, LayerNorm, Linear, ModuleList
from minivl.nn.module import Module

# activation name -> the GELU form that F.bias_gelu fuses with fc1's bias
_FUSED_GELU = {"gelu": "none", "gelu_tanh": "tanh", "quick_gelu": "sigmoid"}


class MLP(Module):
    """Linear -> activation -> Linear (-> dropout); 4x width in transformers.

    With a GELU activation and a backend that has its own ``bias_gelu`` kernel,
    fc1's bias is added inside the activation (``F.bias_gelu``): the same
    math, one pass fewer over the hidden activations each way.
    """

    def __init__(self, dim, hidden_dim, out_dim=None, activation="gelu", dropout=0.0, bias=True):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim, bias)
        self.fc2 = Linear(hidden_dim, out_dim or dim, bias)
        self.activation = activation
        self.act = get_activation(activation)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        form = _FUSED_GELU.get(self.activation)
        if form is not None and type(self.fc1) is Linear and self.fc1.bias is not None and _fuses(x):
            h = F.bias_gelu(F.linear(x, self.fc1.weight), self.fc1.bias, form)
        else:
            h = self.act(self.fc1(x))
        return self.dropout(self.fc2(h))

    def extra_repr(self):
        return f"activation={self.activation!r}"


def _fuses(x):
    """Whether the backend serving ``x`` runs ``bias_gelu`` with its own kernel (not a fallback)."""
    b = backend.for_array(x.data)
    return b.bias_gelu_forward.source == b.name


class TransformerBlock(Module):
    """Self-attention and an MLP, each with a residual connection and a LayerNorm."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, norm_first=True, activation="gelu",
                 dropout=0.0, eps=1e-5, bias=True, mlp_dim=None, kv_dim=None, attn_dim=None):
        """``mlp_dim`` sets the hidden width exactly (a checkpoint's intermediate_size);
        otherwise it is ``int(dim * mlp_ratio)``. ``kv_dim`` is the width of the
        ``context`` a cross-attending block reads (default ``dim``); ``attn_dim``
        the width of its queries, keys and values (default ``dim``)."""
        super().__init__()
        self.norm_first = norm_first
        self.ln_1 = LayerNorm(dim, eps)
        self.attn = MultiHeadAttention(dim, num_heads, kv_dim=kv_dim, inner_dim=attn_dim, out_dim=dim,
                                       bias=bias, dropout=dropout)
        self.ln_2 = LayerNorm(dim, eps)
        self.mlp = MLP(dim, mlp_dim or int(dim * mlp_ratio), activation=activation, dropout=dropout, bias=bias)

    def forward(self, x, key_padding_mask=None, causal=False, attn_mask=None, cache=None, context=None):
        """``x (B, N, D)`` -> ``(B, N, D)``.

        ``context (B, Nk, kv_dim)``: attend to it instead of to ``x`` (then
        ``key_padding_mask (B, Nk)`` marks its real tokens); it is used as given,
        not normalised, in both layouts.
        """
        mask = dict(key_padding_mask=key_padding_mask, causal=causal, attn_mask=attn_mask, cache=cache)
        if self.norm_first:
            x = x + self.attn(self.ln_1(x), context, **mask)
            x = x + self.mlp(self.ln_2(x))
        else:
            x = self.ln_1(x + self.attn(x, context, **mask))
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
