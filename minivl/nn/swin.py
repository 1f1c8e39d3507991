"""Shifted-window attention: the Swin Transformer (Liu et al. 2021, "Swin
Transformer: Hierarchical Vision Transformer using Shifted Windows"; lecture S01).

Global attention over an H x W grid of patch tokens costs (HW)^2; Swin lets
each token attend only inside its M x M window, so the cost is HW * M^2,
linear in the number of pixels. Windows alone never exchange information, so
every second block shifts the grid by M/2 before cutting it into windows and
the window borders fall in new places. The pieces, each a small function:

* ``window_partition`` / ``window_reverse``: (B, H, W, C) <-> (B*nW, M*M, C)
* ``cyclic_shift``: roll the grid by (-s, -s) so the shifted windows tile it
  again (section 3.2, "efficient batch computation for shifted configuration")
* ``shifted_window_mask``: after the roll, a window at the bottom or right
  edge holds tokens that were far apart in the image; the mask forbids them
  to attend to each other
* ``RelativePositionBias``: a learned bias B[h, dy, dx] added to the scores,
  one per head and relative offset, (2M-1)^2 entries (eq. 4)
* ``WindowAttention``, ``SwinBlock``, ``PatchMerging`` (2x2 neighbours
  concatenated, 4C -> 2C: halves the grid between stages) and ``SwinStage``.

Tokens travel as ``(B, H, W, C)`` grids here; the vision encoder flattens
them back to ``(B, N, C)`` sequences.

Why one file of ~330 lines: it follows the paper's section 3 piece by piece,
in order, so a reader can hold the text beside it; each piece is short.
"""

from __future__ import annotations

import math

import numpy as np

from minivl import functional as F
from minivl.nn import init
from minivl.nn.layers import LayerNorm, Linear, ModuleList
from minivl.nn.module import Module, Parameter
from minivl.nn.transformer import MLP
from minivl.tensor import Function, Tensor, array_module


def _check_grid(x, window_size, name="x"):
    if x.ndim != 4:
        raise ValueError(f"{name} must be a grid (B, H, W, C), got shape {x.shape}")
    _, H, W, _ = x.shape
    if H % window_size or W % window_size:
        raise ValueError(f"{name} grid {H}x{W} (shape {x.shape}) is not divisible by window_size {window_size}")


def window_partition(x, window_size) -> Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, M*M, C)``: non-overlapping M x M windows, row
    by row, each flattened row by row (nW = HW / M^2)."""
    _check_grid(x, window_size)
    B, H, W, C = x.shape
    M = window_size
    x = x.reshape(B, H // M, M, W // M, M, C).transpose(0, 1, 3, 2, 4, 5)  # (B, H/M, W/M, M, M, C)
    return x.reshape(B * (H // M) * (W // M), M * M, C)


def window_reverse(windows, window_size, H, W) -> Tensor:
    """The inverse of ``window_partition``: ``(B * nW, M*M, C)`` -> ``(B, H, W, C)``."""
    M = window_size
    if windows.ndim != 3 or windows.shape[1] != M * M or H % M or W % M:
        raise ValueError(f"window_reverse: windows {windows.shape} do not tile a {H}x{W} grid "
                         f"with window_size {M}")
    nW = (H // M) * (W // M)
    if windows.shape[0] % nW:
        raise ValueError(f"window_reverse: {windows.shape[0]} windows is not a multiple of the "
                         f"{nW} windows of a {H}x{W} grid")
    B, C = windows.shape[0] // nW, windows.shape[2]
    x = windows.reshape(B, H // M, W // M, M, M, C).transpose(0, 1, 3, 2, 4, 5)  # (B, H/M, M, W/M, M, C)
    return x.reshape(B, H, W, C)


class CyclicShift(Function):
    """``roll`` of a (B, H, W, C) grid; its gradient is the opposite roll."""

    @staticmethod
    def forward(ctx, x, shift):
        ctx.shift = shift
        return array_module(x).roll(x, (shift, shift), axis=(1, 2))

    @staticmethod
    def backward(ctx, g):
        return (array_module(g).roll(g, (-ctx.shift, -ctx.shift), axis=(1, 2)),)


def cyclic_shift(x, shift) -> Tensor:
    """Roll a grid ``(B, H, W, C)`` by ``shift`` along H and W (token (i, j) moves to
    (i + shift, j + shift), wrapping). Swin rolls by ``-M/2`` before attention and
    by ``+M/2`` after it."""
    if x.ndim != 4:
        raise ValueError(f"cyclic_shift expects a grid (B, H, W, C), got shape {x.shape}")
    return CyclicShift.apply(x, shift=int(shift))


def shifted_window_mask(H, W, window_size, shift) -> np.ndarray:
    """Boolean ``(nW, M*M, M*M)``: may token i of window w attend to token j?

    After rolling the grid by -shift, each axis splits into three regions:
    ``[0, H-M)`` (whole windows, nothing wrapped), ``[H-M, H-shift)`` and
    ``[H-shift, H)`` (the last window, half of it rolled in from the other
    side of the image). Label every cell by its (row region, column region);
    two tokens of one window may attend to each other iff their labels agree.
    With ``shift == 0`` every pair is allowed.
    """
    M = window_size
    if H % M or W % M:
        raise ValueError(f"grid {H}x{W} is not divisible by window_size {M}")
    if not 0 <= shift < M:
        raise ValueError(f"shift must be in [0, window_size={M}), got {shift}")
    label = np.zeros((1, H, W, 1), np.float64)
    if shift:
        cuts_h = (slice(0, H - M), slice(H - M, H - shift), slice(H - shift, H))
        cuts_w = (slice(0, W - M), slice(W - M, W - shift), slice(W - shift, W))
        for r, (sh, sw) in enumerate((sh, sw) for sh in cuts_h for sw in cuts_w):
            label[:, sh, sw, :] = r
    windows = window_partition(Tensor(label), M).data[..., 0]  # (nW, M*M)
    return windows[:, :, None] == windows[:, None, :]  # (nW, M*M, M*M)


def relative_position_index(window_size) -> np.ndarray:
    """``(M*M, M*M)`` integers: the row of the bias table for each (query, key) pair.

    The offset (dy, dx) of key from query lies in [-(M-1), M-1]^2; shifting both
    by M-1 and reading them as a two-digit number in base 2M-1 numbers the
    (2M-1)^2 possible offsets.
    """
    M = window_size
    ys, xs = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    coords = np.stack([ys.ravel(), xs.ravel()])  # (2, M*M)
    rel = coords[:, :, None] - coords[:, None, :] + (M - 1)  # (2, M*M, M*M), in [0, 2M-2]
    return rel[0] * (2 * M - 1) + rel[1]


class RelativePositionBias(Module):
    """A learned bias per head and relative offset: ``table ((2M-1)^2, heads)`` read
    out as ``(heads, M*M, M*M)`` and added to the attention scores (eq. 4)."""

    def __init__(self, window_size, num_heads, std=0.02):
        super().__init__()
        self.window_size, self.num_heads = window_size, num_heads
        self.table = Parameter(init.normal(((2 * window_size - 1) ** 2, num_heads), std=std))
        self.register_buffer("index", relative_position_index(window_size), persistent=False)

    def forward(self) -> Tensor:
        N = self.window_size**2
        bias = F.embedding(self.index.reshape(-1), self.table)  # (N*N, heads)
        return bias.reshape(N, N, self.num_heads).transpose(2, 0, 1)  # (heads, N, N)


class WindowAttention(Module):
    """Multi-head self-attention inside each window, with the relative position
    bias and an optional shifted-window mask.

    ``x (B*nW, N, C)`` with N = M*M; ``mask (nW, N, N)`` boolean (True = allowed).
    The scores are written out (softmax(QK^T / sqrt(d) + B) V): the bias is a
    parameter, so it must stay in the graph.
    """

    def __init__(self, dim, window_size, num_heads, bias=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"window attention width {dim} is not divisible by num_heads={num_heads}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.head_dim = dim // num_heads
        self.qkv = Linear(dim, 3 * dim, bias)
        self.proj = Linear(dim, dim, bias)
        self.relative_position_bias = RelativePositionBias(window_size, num_heads)

    def forward(self, x, mask=None):
        Bw, N, C = x.shape
        if N != self.window_size**2 or C != self.dim:
            raise ValueError(f"window attention expects (B*nW, {self.window_size ** 2}, {self.dim}), "
                             f"got {x.shape}")
        H, hd = self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(Bw, N, 3, H, hd).transpose(2, 0, 3, 1, 4)  # (3, B*nW, H, N, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        s = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(hd))  # (B*nW, H, N, N)
        s = s + self.relative_position_bias()  # (H, N, N) broadcast over windows
        if mask is not None:
            mask = np.asarray(getattr(mask, "data", mask), dtype=bool)
            nW = mask.shape[0]
            if mask.shape != (nW, N, N) or Bw % nW:
                raise ValueError(f"mask must be (nW, {N}, {N}) with nW dividing {Bw} windows, got {mask.shape}")
            allowed = np.broadcast_to(mask[None, :, None], (Bw // nW, nW, H, N, N)).reshape(Bw, H, N, N)
            s = F.masked_fill(s, ~allowed, -np.inf)  # every row keeps its own token, so none is empty
        w = F.softmax(s, axis=-1)
        out = (w @ v).transpose(0, 2, 1, 3).reshape(Bw, N, C)  # (B*nW, N, C)
        return self.proj(out)

    def extra_repr(self):
        return f"dim={self.dim}, window_size={self.window_size}, heads={self.num_heads}"


class SwinBlock(Module):
    """Pre-LN block: x + W-MSA(LN(x)) or SW-MSA (``shift > 0``), then x + MLP(LN(x)).

    ``resolution`` is the (H, W) grid the block sees. As in Swin, a grid no larger
    than the window is one window and is never shifted.
    """

    def __init__(self, dim, resolution, num_heads, window_size=4, shift=0, mlp_ratio=4.0,
                 activation="gelu", eps=1e-5):
        super().__init__()
        H, W = resolution
        if min(H, W) <= window_size:
            window_size, shift = min(H, W), 0
        if H % window_size or W % window_size:
            raise ValueError(f"grid {H}x{W} is not divisible by window_size {window_size}")
        if not 0 <= shift < window_size:
            raise ValueError(f"shift must be in [0, window_size={window_size}), got {shift}")
        self.resolution, self.window_size, self.shift = (H, W), window_size, shift
        self.ln_1 = LayerNorm(dim, eps)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.ln_2 = LayerNorm(dim, eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), activation=activation)
        mask = shifted_window_mask(H, W, window_size, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x):
        """``x (B, H, W, C)`` -> ``(B, H, W, C)``."""
        if x.ndim != 4 or tuple(x.shape[1:3]) != self.resolution:
            raise ValueError(f"SwinBlock expects a grid (B, {self.resolution[0]}, {self.resolution[1]}, C), "
                             f"got shape {x.shape}")
        H, W = self.resolution
        M, s = self.window_size, self.shift
        h = self.ln_1(x)
        if s:
            h = cyclic_shift(h, -s)  # the shifted windows now tile the grid
        h = window_attention_grid(self.attn, h, M, self.attn_mask)
        if s:
            h = cyclic_shift(h, s)
        x = x + h
        return x + self.mlp(self.ln_2(x))

    def extra_repr(self):
        return f"resolution={self.resolution}, window_size={self.window_size}, shift={self.shift}"


def window_attention_grid(attn, x, window_size, mask=None) -> Tensor:
    """Apply ``WindowAttention`` to a whole grid ``(B, H, W, C)``: partition, attend, reverse."""
    _, H, W, _ = x.shape
    windows = window_partition(x, window_size)  # (B*nW, M*M, C)
    return window_reverse(attn(windows, mask), window_size, H, W)  # (B, H, W, C)


class PatchMerging(Module):
    """Halve the grid, double the width: each 2x2 neighbourhood is concatenated
    (4C), layer-normed and projected to 2C (section 3.1; ``out_dim`` changes 2C)."""

    def __init__(self, dim, eps=1e-5, out_dim=None):
        super().__init__()
        self.dim = dim
        self.norm = LayerNorm(4 * dim, eps)
        self.reduction = Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x):
        """``(B, H, W, C)`` -> ``(B, H/2, W/2, 2C)`` (or ``out_dim``)."""
        if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2 or x.shape[3] != self.dim:
            raise ValueError(f"PatchMerging expects (B, H, W, {self.dim}) with even H and W, got {x.shape}")
        B, H, W, C = x.shape
        # Swin's order: (top-left, bottom-left, top-right, bottom-right)
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 4, 2, 5)  # (B, H/2, W/2, dx, dy, C)
        x = x.reshape(B, H // 2, W // 2, 4 * C)
        return self.reduction(self.norm(x))


class SwinStage(Module):
    """``depth`` SwinBlocks alternating plain (shift 0) and shifted (M/2) windows,
    then optionally a PatchMerging."""

    def __init__(self, dim, resolution, depth, num_heads, window_size=4, mlp_ratio=4.0,
                 downsample=False, activation="gelu", eps=1e-5):
        super().__init__()
        self.blocks = ModuleList(
            SwinBlock(dim, resolution, num_heads, window_size, shift=0 if i % 2 == 0 else window_size // 2,
                      mlp_ratio=mlp_ratio, activation=activation, eps=eps)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, eps) if downsample else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class SwinTransformer(Module):
    """Shifted-window blocks over a patch grid, as the shared vision encoder uses them.

    ``depth`` blocks are split evenly into ``stages``; between stages a
    PatchMerging halves the grid. Unlike Swin, which doubles the width at each
    merge (C -> 2C), the width stays ``dim`` here (``PatchMerging`` projects 4C
    -> C), so every head that reads ``(B, 1+N, D)`` works unchanged. Swin has no
    [CLS] token: the output's token 0 is the mean of the final patch tokens,
    Swin's global average pool.
    """

    def __init__(self, dim, grid, depth, num_heads, window_size=4, stages=1, mlp_ratio=4.0,
                 activation="gelu", eps=1e-5):
        super().__init__()
        if stages < 1 or depth % stages:
            raise ValueError(f"depth {depth} does not split into {stages} stages of equal depth")
        self.stages = ModuleList()
        self.merges = ModuleList()
        side = grid
        for s in range(stages):
            self.stages.append(SwinStage(dim, (side, side), depth // stages, num_heads, window_size,
                                         mlp_ratio, activation=activation, eps=eps))
            if s < stages - 1:
                if side % 2:
                    raise ValueError(f"stage {s} grid {side}x{side} is odd: patch merging needs an even grid")
                self.merges.append(PatchMerging(dim, eps, out_dim=dim))
                side //= 2
        self.grid, self.out_grid = grid, side

    def forward(self, x):
        """Patch tokens ``(B, g*g, D)`` row by row -> ``(B, 1 + g'*g', D)``, pooled token first."""
        B, N, D = x.shape
        if N != self.grid**2:
            raise ValueError(f"SwinTransformer expects {self.grid}x{self.grid} = {self.grid ** 2} patch tokens, "
                             f"got shape {x.shape}")
        x = x.reshape(B, self.grid, self.grid, D)  # (B, g, g, D)
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if s < len(self.merges):
                x = self.merges[s](x)  # (B, g/2, g/2, D)
        x = x.reshape(B, self.out_grid**2, D)  # (B, N', D)
        return F.concat([x.mean(axis=1, keepdims=True), x], axis=1)  # (B, 1+N', D)
