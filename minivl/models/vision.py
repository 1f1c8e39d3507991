"""The vision transformer encoder, written once and shared: the ViT classifier
(Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"; lecture S01), the
CLIP image tower (Radford et al. 2021; S14) and LLaVA's frozen vision encoder
(Liu et al. 2023; S29) are all this module with different options.

An image becomes a sequence of tokens:

    image (B, C, H, W)
      -> cut into non-overlapping P x P patches, row by row   (B, N, C*P*P), N = HW/P^2
      -> patch_embed: a Conv2d with kernel = stride = P, which is one Linear
         applied to every flattened patch, and runs as one     (B, N, D)
      -> prepend the learned [CLS] token (zero init, as in ViT) (B, 1+N, D)
      -> add the learned 1-D position embedding pos_embed     (B, 1+N, D)
      -> (CLIP only) ln_pre
      -> depth pre-LN TransformerBlocks (minivl.nn.Transformer)
      -> ln_post

Options: ``ln_pre`` (CLIP), ``activation`` ('gelu' for ViT, 'quick_gelu' for
CLIP), ``patch_bias`` (CLIP's conv has none), ``dropout``, ``eps``.

``attention`` picks how the tokens attend (S01; lectures/07-scale.md):

* ``"global"`` (default): every token attends to every token, (1+N)^2 scores;
* ``"swin"``: shifted M x M windows (``window_size``), ``minivl/nn/swin.py``;
  no [CLS] and no absolute positions (Swin's relative bias replaces them);
  ``swin_stages`` stages with patch merging between them; token 0 of the
  output is the mean of the final patch tokens;
* ``"pvt"``: keys and values from the grid reduced ``sr_ratio`` times per side,
  ``minivl/nn/pvt.py``; [CLS] and positions as in ViT.

Only the global path records attention weights under ``nn.record``.
"""

from __future__ import annotations

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.inputs import check_images
from minivl.nn.pvt import PVTTransformer
from minivl.nn.swin import SwinTransformer
from minivl.tensor import Tensor

# ImageNet statistics are meaningless for synthetic images: by default pixels
# are mapped from [0, 255] to [-1, 1], as HF's ViTImageProcessor does.
DEFAULT_MEAN, DEFAULT_STD = 0.5, 0.5
ATTENTIONS = ("global", "swin", "pvt")


def preprocess(images, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> np.ndarray:
    """A uint8 batch ``(B, H, W, C)`` or ``(B, H, W)`` -> normalised float32 ``(B, C, H, W)``.

    Pixels are scaled to [0, 1] and then standardised per channel with
    ``mean`` and ``std`` (numbers, or one per channel). A float batch is taken
    to be in [0, 1] already. Returns a NumPy array, which every model takes as
    its images (wrap it in a Tensor to ask for a gradient to the pixels).
    """
    arr = np.asarray(images)
    if arr.ndim == 3:  # grayscale: add the channel axis
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"preprocess expects images (B, H, W, C) or (B, H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype.kind == "f":
        x = arr.astype(np.float32)
    else:
        raise TypeError(f"preprocess expects uint8 or float images, got dtype {arr.dtype}")
    C = x.shape[-1]
    mean = np.broadcast_to(np.asarray(mean, np.float32), (C,))
    std = np.broadcast_to(np.asarray(std, np.float32), (C,))
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (B, C, H, W)


def patchify(images: np.ndarray, patch_size) -> np.ndarray:
    """Cut a NumPy batch ``(B, C, H, W)`` into its patches ``(B, N, C, P, P)``, row by row.

    The patch embedding is one Linear on each flattened patch:
    ``patchify(x, P).reshape(B, N, -1) @ patch_embed.weight.reshape(D, -1).T``
    equals the convolution's output (a test checks it).
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"patchify expects images (B, C, H, W), got shape {x.shape}")
    B, C, H, W = x.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"image size {H}x{W} (shape {x.shape}) is not divisible by patch_size {P}")
    x = x.reshape(B, C, H // P, P, W // P, P).transpose(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return x.reshape(B, (H // P) * (W // P), C, P, P)


class VisionEncoder(nn.Module):
    """Patches -> tokens -> pre-LN transformer; returns every token's final state."""

    def __init__(self, image_size=32, patch_size=4, in_channels=3, dim=64, depth=4, num_heads=4,
                 mlp_ratio=4.0, activation="gelu", ln_pre=False, patch_bias=True, dropout=0.0,
                 eps=1e-5, attention="global", window_size=4, swin_stages=1, sr_ratio=2):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.dim, self.depth = dim, depth
        self.grid = image_size // patch_size  # patches per side
        self.num_patches = self.grid**2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size, bias=patch_bias)
        self.attention = attention
        if attention != "swin":  # Swin has neither: relative position bias, average pooling
            self.cls_token = nn.Parameter(nn.init.zeros((1, 1, dim)))
            self.pos_embed = nn.Parameter(nn.init.normal((1, 1 + self.num_patches, dim), std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.ln_pre = nn.LayerNorm(dim, eps) if ln_pre else None
        if attention == "global":
            self.transformer = nn.Transformer(dim, depth, num_heads, mlp_ratio=mlp_ratio, norm_first=True,
                                              activation=activation, dropout=dropout, eps=eps)
        elif attention == "swin":
            self.transformer = SwinTransformer(dim, self.grid, depth, num_heads, window_size, swin_stages,
                                               mlp_ratio, activation, eps)
        else:
            self.transformer = PVTTransformer(dim, self.grid, depth, num_heads, sr_ratio, mlp_ratio, activation, eps)
        self.ln_post = nn.LayerNorm(dim, eps)

    def embed(self, x) -> Tensor:
        """Images ``(B, C, H, W)``, checked by ``forward`` -> token embeddings ``(B, 1+N, D)``."""
        B, C, D, P, g = x.shape[0], self.in_channels, self.dim, self.patch_size, self.grid
        # The convolution with kernel = stride = P is one Linear on each flattened
        # patch, so it runs as one: cut the patches out (row by row, as
        # patchify does), then (B, N, C*P*P) @ weight (D, C*P*P)^T + bias.
        patches = x.reshape(B, C, g, P, g, P).transpose(0, 2, 4, 1, 3, 5)  # (B, g, g, C, P, P)
        patches = patches.reshape(B, self.num_patches, C * P * P)  # (B, N, C*P*P)
        weight = self.patch_embed.weight.reshape(D, C * P * P)
        x = F.linear(patches, weight, self.patch_embed.bias)  # (B, N, D), patches row by row
        if self.attention == "swin":
            return self.dropout(x)  # (B, N, D): no [CLS], no absolute positions
        cls = self.cls_token.expand((B, 1, D))  # (B, 1, D), one shared [CLS] per image
        x = F.concat([cls, x], axis=1) + self.pos_embed  # (B, 1+N, D)
        return self.dropout(x)

    def forward(self, images) -> Tensor:
        """Final hidden states ``(B, 1+N, D)`` (token 0 is [CLS]) after ``ln_post``.

        ``images``: floats ``(B, C, H, W)``, an ndarray or a Tensor (see
        ``minivl/models/inputs.py``). Under ``nn.record`` the recording holds
        the ``depth + 1`` hidden states ``[block input, after block 1, ...,
        after block depth]`` (before ``ln_post``; LLaVA reads
        ``rec.hidden[-2][:, 1:]``, S29) and each block's attention
        ``(B, H, 1+N, 1+N)``.
        """
        x = check_images(images, self.in_channels, self.image_size, self.patch_size)
        x = self.embed(x)  # (B, 1+N, D)
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        return self.ln_post(self.transformer(x))

    def extra_repr(self):
        return (f"image_size={self.image_size}, patch_size={self.patch_size}, "
                f"in_channels={self.in_channels}, tokens=1+{self.num_patches}, attention={self.attention!r}")
