"""ViLBERT's co-attention block (lecture S06; Lu et al. 2019, section 3.1, Fig. 2b).

Two streams of different widths exchange keys and values:

    text   (B, T, Dt)   queries from the words    attend over keys/values of the regions
    visual (B, N, Dv)   queries from the regions  attend over keys/values of the words

Each attention projects into a shared ``co_dim`` and back; then, in its own
stream, dense + dropout + residual + LayerNorm (post-LN, as BERT), and the
stream's own feed-forward with residual + LayerNorm. That is exactly a
post-LN ``TransformerBlock`` whose attention reads a ``context``: one such
half per stream, each handed the *other* stream's states from before the
block (neither half sees the other's update).

Where the weights live: ViLBERT says each stream "computes its own Q, K, V".
The keys and values the words read are projections of the region states (the
visual stream's K, V); here they are ``text.attn.k_proj / v_proj`` (inputs
``Dv`` wide), because each of the six projections is used by exactly one of
the two attentions, so grouping them by the attention that uses them is the
same function.

A block updates two streams, so it has ``exchange`` (returning the pair)
instead of a ``forward``: minivl's forwards return one Tensor
(docs/ARCHITECTURE.md). Attention maps are read with ``nn.record(block.text)``
(each word over the regions) and ``nn.record(block.visual)``.
"""

from __future__ import annotations

from minivl.nn.module import Module
from minivl.nn.transformer import TransformerBlock


class CoAttentionBlock(Module):
    """The two halves ``text`` and ``visual``; see the module docstring."""

    def __init__(self, text_dim, visual_dim, num_heads, co_dim=None, text_mlp_dim=None,
                 visual_mlp_dim=None, activation="gelu", dropout=0.0, eps=1e-12):
        super().__init__()
        co_dim = co_dim or text_dim
        if co_dim % num_heads:
            raise ValueError(f"co_dim={co_dim} is not divisible by num_heads={num_heads}")
        half = dict(norm_first=False, activation=activation, dropout=dropout, eps=eps, attn_dim=co_dim)
        self.text = TransformerBlock(text_dim, num_heads, mlp_dim=text_mlp_dim or 4 * text_dim,
                                     kv_dim=visual_dim, **half)
        self.visual = TransformerBlock(visual_dim, num_heads, mlp_dim=visual_mlp_dim or 4 * visual_dim,
                                       kv_dim=text_dim, **half)
        self.text_dim, self.visual_dim, self.co_dim = text_dim, visual_dim, co_dim

    def exchange(self, text, visual, text_mask=None, visual_mask=None):
        """``text (B, T, Dt)``, ``visual (B, N, Dv)`` -> the updated pair, same shapes.

        ``text_mask (B, T)`` / ``visual_mask (B, N)``: True for real tokens; a
        stream's padding is hidden from the other stream's queries.
        """
        if text.ndim != 3 or visual.ndim != 3 or text.shape[0] != visual.shape[0]:
            raise ValueError(f"co-attention expects text (B, T, {self.text_dim}) and visual "
                             f"(B, N, {self.visual_dim}), got {text.shape} and {visual.shape}")
        if text.shape[-1] != self.text_dim or visual.shape[-1] != self.visual_dim:
            raise ValueError(f"co-attention widths: text {text.shape} should end in {self.text_dim}, "
                             f"visual {visual.shape} in {self.visual_dim}")
        new_text = self.text(text, context=visual, key_padding_mask=visual_mask)  # (B, T, Dt)
        new_visual = self.visual(visual, context=text, key_padding_mask=text_mask)  # (B, N, Dv)
        return new_text, new_visual

    def forward(self, *args, **kwargs):
        raise TypeError("CoAttentionBlock updates two streams: call exchange(text, visual, text_mask, "
                        "visual_mask), which returns (text, visual)")

    def extra_repr(self):
        return f"text_dim={self.text_dim}, visual_dim={self.visual_dim}, co_dim={self.co_dim}"
