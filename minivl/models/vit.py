"""ViT: the vision transformer image classifier (Dosovitskiy et al. 2021, "An
Image is Worth 16x16 Words"; lecture S01, and the image tower of CLIP, S14).

    logits = head(VisionEncoder(images)[:, 0])       # a Linear on the [CLS] output

The encoder (patches, [CLS], positions, pre-LN blocks, final LN) lives in
``minivl/models/vision.py``, shared with CLIP and LLaVA. ``ViT.from_hf`` loads
a Hugging Face ``ViTForImageClassification`` state dict. Training on the
digits and the shapes world is ``train_vit`` in ``minivl/commands/vit.py``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from minivl import nn
from minivl.models.vision import VisionEncoder

# Hugging Face's activation names -> minivl's (nn.get_activation).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "quick_gelu": "quick_gelu", "relu": "relu"}

# Hugging Face ViT parameter names -> ours. transformers 5 renamed the layers
# (``vit.layers.0.attention.q_proj``); checkpoints written by transformers 4
# use ``vit.encoder.layer.0.attention.attention.query``. Both are accepted.
# Linear weights are (out, in) on both sides, so no transposes are needed.
_HF_NAMES = [
    (r"^vit\.embeddings\.cls_token$", "encoder.cls_token"),
    (r"^vit\.embeddings\.position_embeddings$", "encoder.pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "encoder.patch_embed."),
    (r"^vit\.(?:layers|encoder\.layer)\.(\d+)\.", r"encoder.transformer.blocks.\1."),
    (r"\.layernorm_before\.", ".ln_1."),
    (r"\.layernorm_after\.", ".ln_2."),
    (r"\.attention\.(?:attention\.query|q_proj)\.", ".attn.q_proj."),
    (r"\.attention\.(?:attention\.key|k_proj)\.", ".attn.k_proj."),
    (r"\.attention\.(?:attention\.value|v_proj)\.", ".attn.v_proj."),
    (r"\.attention\.(?:output\.dense|o_proj)\.", ".attn.out_proj."),
    (r"\.(?:intermediate\.dense|mlp\.fc1)\.", ".mlp.fc1."),
    (r"\.(?:output\.dense|mlp\.fc2)\.", ".mlp.fc2."),
    (r"^vit\.layernorm\.", "encoder.ln_post."),
    (r"^classifier\.", "head."),
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


class ViT(nn.Module):
    """A VisionEncoder plus a linear classifier on its final [CLS] state."""

    Config = ViTConfig

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        c = self.config = ViTConfig(**{**(asdict(config) if config else {}), **overrides})
        self.encoder = VisionEncoder(c.image_size, c.patch_size, c.in_channels, c.dim, c.depth,
                                     c.num_heads, c.mlp_ratio, activation=c.activation,
                                     dropout=c.dropout, eps=c.eps)
        self.head = nn.Linear(c.dim, c.num_classes)

    def forward(self, images, return_weights=False):
        """Images ``(B, C, H, W)`` -> logits ``(B, num_classes)`` (and each block's attention)."""
        out = self.encoder(images, return_weights=return_weights)
        hidden, weights = out if return_weights else (out, None)  # hidden (B, 1+N, D)
        logits = self.head(hidden[:, 0])  # (B, num_classes): only [CLS] is classified
        return (logits, weights) if return_weights else logits

    @classmethod
    def from_hf(cls, state_dict, hf_config):
        """A ViT holding the weights of a Hugging Face ``ViTForImageClassification``.

        ``state_dict`` maps HF names to NumPy arrays (``{k: v.numpy() for k, v in
        model.state_dict().items()}``); ``hf_config`` is ``config.to_dict()``.
        """
        c = hf_config
        act = c.get("hidden_act", "gelu")
        if act not in HF_ACTIVATIONS:
            raise ValueError(f"hidden_act {act!r} is not supported; expected one of {sorted(HF_ACTIVATIONS)}")
        dim, inner = c["hidden_size"], c["intermediate_size"]
        classifier = np.asarray(state_dict["classifier.weight"])  # (num_classes, dim)
        model = cls(ViTConfig(
            num_classes=classifier.shape[0], image_size=c["image_size"], patch_size=c["patch_size"],
            in_channels=c.get("num_channels", 3), dim=dim, depth=c["num_hidden_layers"],
            num_heads=c["num_attention_heads"], mlp_ratio=inner / dim,
            activation=HF_ACTIVATIONS[act], eps=c.get("layer_norm_eps", 1e-12),
        ))
        hidden = model.encoder.transformer.blocks[0].mlp.fc1.out_features
        if hidden != inner:
            raise ValueError(f"intermediate_size {inner} is not a width minivl can build (got {hidden})")
        ours = {}
        for name, value in state_dict.items():
            if name.startswith("vit.pooler."):  # the classifier reads [CLS], never the pooler
                continue
            ours[hf_name_to_minivl(name)] = np.asarray(value, dtype=np.float32)
        if not c.get("qkv_bias", True):
            # HF then has no q/k/v biases; ours exist and must be zero.
            for i in range(model.encoder.depth):
                for proj in ("q_proj", "k_proj", "v_proj"):
                    ours[f"encoder.transformer.blocks.{i}.attn.{proj}.bias"] = np.zeros(dim, np.float32)
        model.load_state_dict(ours)
        return model.eval()


def hf_name_to_minivl(name: str) -> str:
    """``vit.layers.0.attention.q_proj.weight`` -> ``encoder.transformer.blocks.0.attn.q_proj.weight``."""
    for pattern, replacement in _HF_NAMES:
        name = re.sub(pattern, replacement, name)
    return name
