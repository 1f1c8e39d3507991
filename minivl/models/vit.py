"""ViT: the vision transformer image classifier (Dosovitskiy et al. 2021, "An
Image is Worth 16x16 Words"; lecture S01, and the image tower of CLIP, S14).

    logits = head(VisionEncoder(images)[:, 0])       # a Linear on the [CLS] output

The encoder (patches, [CLS], positions, pre-LN blocks, final LN) lives in
``minivl/models/vision.py``, shared with CLIP and LLaVA. ``ViT.from_hf`` loads
a Hugging Face ``ViTForImageClassification`` state dict through the rules
table ``HF_RULES`` (``minivl/models/hf.py``). Training on the
digits and the shapes world is ``train_vit`` in ``minivl/recipes/vit.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from minivl import nn
from minivl.models.hf import Rule, hf_activation, hf_setting, load_hf
from minivl.models.vision import VisionEncoder

# Hugging Face ViT names -> ours. transformers 5 renamed the layers
# (``vit.layers.0.attention.q_proj``); files written by transformers 4 use
# ``vit.encoder.layer.0.attention.attention.query``. Both are accepted.
# Linear weights are (out, in) on both sides: a rename, no transposes.
_L, _B = "vit.{layers|encoder.layer}.{i}", "encoder.transformer.blocks.{i}"
HF_RULES = [
    Rule("vit.embeddings.cls_token", "encoder.cls_token"),
    Rule("vit.embeddings.position_embeddings", "encoder.pos_embed"),
    Rule("vit.embeddings.patch_embeddings.projection.{p}", "encoder.patch_embed.{p}"),
    Rule(_L + ".layernorm_before.{p}", _B + ".ln_1.{p}"),
    Rule(_L + ".layernorm_after.{p}", _B + ".ln_2.{p}"),
    Rule(_L + ".attention.{attention.query|q_proj}.{p}", _B + ".attn.q_proj.{p}"),
    Rule(_L + ".attention.{attention.key|k_proj}.{p}", _B + ".attn.k_proj.{p}"),
    Rule(_L + ".attention.{attention.value|v_proj}.{p}", _B + ".attn.v_proj.{p}"),
    Rule(_L + ".attention.{output.dense|o_proj}.{p}", _B + ".attn.out_proj.{p}"),
    Rule(_L + ".{intermediate.dense|mlp.fc1}.{p}", _B + ".mlp.fc1.{p}"),
    Rule(_L + ".{output.dense|mlp.fc2}.{p}", _B + ".mlp.fc2.{p}"),
    Rule("vit.layernorm.{p}", "encoder.ln_post.{p}"),
    Rule("classifier.{p}", "head.{p}"),
    Rule("vit.pooler.dense.{p}", None),  # the classifier reads [CLS], never the pooler
]


@dataclass
class ViTConfig:
    num_classes: int = 10
    image_size: int = 16
    patch_size: int = 4  # ViT-B/16: 224 / 16 -> 196 patches
    in_channels: int = 1
    dim: int = 64  # ViT-B: 768
    depth: int = 4  # ViT-B: 12
    num_heads: int = 4  # ViT-B: 12
    mlp_ratio: float = 4.0
    activation: str = "gelu"
    dropout: float = 0.0
    eps: float = 1e-5  # HF ViT uses 1e-12
    # how tokens attend (VisionEncoder): "global", "swin" (shifted windows), "pvt" (spatial reduction)
    attention: str = "global"
    window_size: int = 4
    swin_stages: int = 1
    sr_ratio: int = 2


class ViT(nn.Module):
    """A VisionEncoder plus a linear classifier on its final [CLS] state."""

    Config = ViTConfig

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        c = self.config = ViTConfig(**{**(asdict(config) if config else {}), **overrides})
        self.encoder = VisionEncoder(c.image_size, c.patch_size, c.in_channels, c.dim, c.depth,
                                     c.num_heads, c.mlp_ratio, activation=c.activation,
                                     dropout=c.dropout, eps=c.eps, attention=c.attention,
                                     window_size=c.window_size, swin_stages=c.swin_stages, sr_ratio=c.sr_ratio)
        self.head = nn.Linear(c.dim, c.num_classes)

    def forward(self, images):
        """Images ``(B, C, H, W)`` -> logits ``(B, num_classes)``."""
        hidden = self.encoder(images)  # (B, 1+N, D)
        return self.head(hidden[:, 0])  # (B, num_classes): only [CLS] is classified

    @classmethod
    def from_hf(cls, state_dict, hf_config):
        """A ViT holding the weights of a Hugging Face ``ViTForImageClassification``, in eval mode.

        ``state_dict`` maps HF names to arrays (NumPy or torch); ``hf_config`` is
        ``config.to_dict()``, the ``config.json`` dict or the config object.
        """
        get = lambda name, default=None: hf_setting(hf_config, name, default)
        dim, inner = get("hidden_size"), get("intermediate_size")
        num_classes = np.shape(state_dict["classifier.weight"])[0]  # (num_classes, dim)
        model = cls(ViTConfig(
            num_classes=num_classes, image_size=get("image_size"), patch_size=get("patch_size"),
            in_channels=get("num_channels", 3), dim=dim, depth=get("num_hidden_layers"),
            num_heads=get("num_attention_heads"), mlp_ratio=inner / dim,
            activation=hf_activation(get("hidden_act", "gelu")), eps=get("layer_norm_eps", 1e-12),
        ))
        hidden = model.encoder.transformer.blocks[0].mlp.fc1.out_features
        if hidden != inner:
            raise ValueError(f"intermediate_size {inner} is not a width minivl can build (got {hidden})")
        if get("qkv_bias", True):
            return load_hf(model, state_dict, HF_RULES)
        # Without qkv_bias HF has no query/key/value biases; ours exist and must be zero.
        for block in model.encoder.transformer.blocks:
            for proj in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj):
                proj.bias.data[...] = 0.0
        return load_hf(model, state_dict, HF_RULES, optional=[
            f"encoder.transformer.blocks.{i}.attn.{p}_proj.bias" for i in range(model.encoder.depth) for p in "qkv"
        ])
