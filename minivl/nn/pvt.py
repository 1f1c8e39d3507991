"""Spatial-reduction attention: the Pyramid Vision Transformer (Wang et al.
2021, "Pyramid Vision Transformer: A Versatile Backbone for Dense Prediction
without Convolutions", section 3.3; lecture S01).

Queries stay at full resolution, but keys and values come from the feature
map shrunk R times along each side by a strided convolution (kernel = stride
= R, one Linear per R x R patch) followed by a LayerNorm:

    x (B, N, C), N = H*W   --as a map-->   (B, C, H, W)
      --Conv2d(C, C, R, stride R)-->       (B, C, H/R, W/R)
      --flatten, LayerNorm-->               (B, N/R^2, C)     keys and values
    Attention(Q (B, N, C), K, V (B, N/R^2, C))                (B, N, C)

The score matrix is N x N/R^2 instead of N x N: still quadratic in the image
side, but R^2 times smaller, and the reduction grows with the resolution in
PVT's pyramid (R = 8, 4, 2, 1 over its stages). A [CLS] token, when the
sequence has one, is kept out of the reduction: it queries the map and is
itself one more key and value.
"""

from __future__ import annotations

from minivl import functional as F
from minivl.nn.layers import Conv2d, LayerNorm, Linear, ModuleList
from minivl.nn.module import Module
from minivl.nn.transformer import MLP


class SpatialReductionAttention(Module):
    """Multi-head attention whose keys and values are a spatially reduced copy of
    the input grid. ``sr_ratio=1`` is ordinary global self-attention."""

    def __init__(self, dim, num_heads, sr_ratio=2, bias=True, eps=1e-5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1, got {sr_ratio}")
        self.dim, self.num_heads, self.head_dim, self.sr_ratio = dim, num_heads, dim // num_heads, sr_ratio
        self.q = Linear(dim, dim, bias)
        self.kv = Linear(dim, 2 * dim, bias)
        self.proj = Linear(dim, dim, bias)
        if sr_ratio > 1:
            self.sr = Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = LayerNorm(dim, eps)

    def reduce(self, x, grid):
        """Grid tokens ``(B, H*W, C)`` -> the reduced keys' source ``(B, HW/R^2, C)``."""
        B, N, C = x.shape
        H, W = grid
        R = self.sr_ratio
        if R == 1:
            return x
        if H % R or W % R:
            raise ValueError(f"grid {H}x{W} is not divisible by sr_ratio {R}")
        fmap = x.transpose(0, 2, 1).reshape(B, C, H, W)  # (B, C, H, W)
        r = self.sr(fmap).reshape(B, C, (H // R) * (W // R)).transpose(0, 2, 1)  # (B, HW/R^2, C)
        return self.norm(r)

    def forward(self, x, grid, num_prefix=0):
        """``x (B, P + H*W, C)``: ``num_prefix`` = P leading tokens ([CLS]) then the grid
        row by row. Returns ``(B, P + H*W, C)``."""
        H, W = grid
        if x.ndim != 3 or x.shape[1] != num_prefix + H * W or x.shape[2] != self.dim:
            raise ValueError(f"spatial-reduction attention expects (B, {num_prefix} + {H}*{W}, {self.dim}), "
                             f"got {x.shape}")
        B, N, C = x.shape
        nh, hd = self.num_heads, self.head_dim
        source = self.reduce(x[:, num_prefix:], grid)  # (B, HW/R^2, C)
        if num_prefix:
            source = F.concat([x[:, :num_prefix], source], axis=1)  # (B, P + HW/R^2, C)
        Nk = source.shape[1]
        q = self.q(x).reshape(B, N, nh, hd).transpose(0, 2, 1, 3)  # (B, nh, N, hd)
        kv = self.kv(source).reshape(B, Nk, 2, nh, hd).transpose(2, 0, 3, 1, 4)  # (2, B, nh, Nk, hd)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # (B, nh, N, hd)
        return self.proj(out.transpose(0, 2, 1, 3).reshape(B, N, C))

    def extra_repr(self):
        return f"dim={self.dim}, heads={self.num_heads}, sr_ratio={self.sr_ratio}"


class PVTBlock(Module):
    """Pre-LN block with spatial-reduction attention: x + SRA(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim, num_heads, sr_ratio=2, mlp_ratio=4.0, activation="gelu", eps=1e-5):
        super().__init__()
        self.ln_1 = LayerNorm(dim, eps)
        self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, eps=eps)
        self.ln_2 = LayerNorm(dim, eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), activation=activation)

    def forward(self, x, grid, num_prefix=0):
        x = x + self.attn(self.ln_1(x), grid, num_prefix)
        return x + self.mlp(self.ln_2(x))


class PVTTransformer(Module):
    """``depth`` PVTBlocks over a [CLS] token and a ``grid x grid`` map of patch tokens.

    PVT proper is a pyramid of four stages, each with its own patch embedding
    and reduction ratio; the shared vision encoder keeps one resolution and one
    ``sr_ratio`` so that its output stays ``(B, 1+N, D)``.
    """

    def __init__(self, dim, grid, depth, num_heads, sr_ratio=2, mlp_ratio=4.0, activation="gelu", eps=1e-5):
        super().__init__()
        if grid % sr_ratio:
            raise ValueError(f"the {grid}x{grid} patch grid is not divisible by sr_ratio {sr_ratio}")
        self.grid = grid
        self.blocks = ModuleList(PVTBlock(dim, num_heads, sr_ratio, mlp_ratio, activation, eps) for _ in range(depth))

    def forward(self, x):
        """``(B, 1 + grid*grid, D)`` -> the same shape."""
        for block in self.blocks:
            x = block(x, (self.grid, self.grid), num_prefix=1)
        return x
