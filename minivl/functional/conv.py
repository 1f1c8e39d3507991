"""Convolution, transposed convolution, nearest upsampling and pooling on
``(B, C, H, W)`` images -- the conv stages of ViT's patch embedding (S02),
ViLBERT's region features (S04) and DALL-E's dVAE (S25).

conv2d is im2col + one matmul: every receptive field is unfolded into a row,
so the convolution becomes a GEMM that the kernel backend runs fast.
"""

from __future__ import annotations

import numpy as np

from minivl.functional.linear import matmul
from minivl.functional.shape import reshape, transpose
from minivl.tensor import Function, array_module


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _windows(x, kh, kw, sh, sw):
    """A strided view ``(B, C, Ho, Wo, kh, kw)`` of every receptive field (no copy)."""
    B, C, H, W = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    s = x.strides
    shape, strides = (B, C, Ho, Wo, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2], s[3])
    if isinstance(x, np.ndarray):
        return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
    return array_module(x).lib.stride_tricks.as_strided(x, shape, strides)  # CuPy: no writeable flag


class Unfold(Function):
    """im2col: ``(B, C, H, W)`` -> ``(B, Ho, Wo, C*kh*kw)`` (padding applied first)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        ctx.shape, ctx.params = x.shape, (kernel, stride, padding)
        padded = array_module(x).pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        win = _windows(padded, kh, kw, sh, sw)  # (B, C, Ho, Wo, kh, kw)
        B, C, Ho, Wo = win.shape[:4]
        return win.transpose(0, 2, 3, 1, 4, 5).reshape(B, Ho, Wo, C * kh * kw)

    @staticmethod
    def backward(ctx, g):
        (kh, kw), (sh, sw), (ph, pw) = ctx.params
        B, C, H, W = ctx.shape
        Ho, Wo = g.shape[1:3]
        g = g.reshape(B, Ho, Wo, C, kh, kw)
        out = array_module(g).zeros((B, C, H + 2 * ph, W + 2 * pw), dtype=g.dtype)
        # each kernel offset (i, j) touches a strided grid of input pixels: add them back
        for i in range(kh):
            for j in range(kw):
                out[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] += g[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return out[:, :, ph : ph + H, pw : pw + W]


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation: ``x (B, C, H, W)``, ``weight (O, C, kh, kw)`` -> ``(B, O, Ho, Wo)``."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d expects x (B, C, H, W) and weight (O, C, kh, kw), got {x.shape}, {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: x has {x.shape[1]} channels (shape {x.shape}), weight expects {weight.shape[1]}")
    O, C, kh, kw = weight.shape
    stride, padding = _pair(stride), _pair(padding)
    if x.shape[2] + 2 * padding[0] < kh or x.shape[3] + 2 * padding[1] < kw:
        raise ValueError(f"conv2d: kernel {kh}x{kw} is larger than the padded input {x.shape}")
    cols = Unfold.apply(x, kernel=(kh, kw), stride=stride, padding=padding)  # (B, Ho, Wo, C*kh*kw)
    y = matmul(cols, reshape(weight, (O, C * kh * kw)).T)  # (B, Ho, Wo, O)
    if bias is not None:
        y = y + bias
    return transpose(y, (0, 3, 1, 2))  # (B, O, Ho, Wo)


class Fold(Function):
    """col2im, the adjoint of Unfold: sum each column back onto its receptive field."""

    @staticmethod
    def forward(ctx, cols, out_shape, kernel, stride, padding):
        ctx.params = (out_shape, kernel, stride, padding)
        return Unfold.backward(_Holder(out_shape, kernel, stride, padding), cols)

    @staticmethod
    def backward(ctx, g):
        out_shape, kernel, stride, padding = ctx.params
        return Unfold.forward(_Holder(out_shape, kernel, stride, padding), g, kernel, stride, padding)


class _Holder:
    """A stand-in context so Fold can reuse Unfold's two halves."""

    def __init__(self, shape, kernel, stride, padding):
        self.shape, self.params = shape, (kernel, stride, padding)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0):
    """Transposed convolution (the gradient of conv2d w.r.t. its input):
    ``x (B, C, H, W)``, ``weight (C, O, kh, kw)`` -> ``(B, O, Ho, Wo)`` with
    ``Ho = (H - 1) * stride - 2 * padding + kh``."""
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"conv_transpose2d expects x (B, C, H, W) and weight (C, O, kh, kw), got {x.shape}, {weight.shape}"
        )
    B, C, H, W = x.shape
    _, O, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    Ho, Wo = (H - 1) * sh - 2 * ph + kh, (W - 1) * sw - 2 * pw + kw
    cols = matmul(transpose(x, (0, 2, 3, 1)), reshape(weight, (C, O * kh * kw)))  # (B, H, W, O*kh*kw)
    y = Fold.apply(cols, out_shape=(B, O, Ho, Wo), kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw))
    return y if bias is None else y + reshape(bias, (1, O, 1, 1))


class Upsample(Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        xp = array_module(x)
        return xp.repeat(xp.repeat(x, factor, axis=2), factor, axis=3)

    @staticmethod
    def backward(ctx, g):
        f = ctx.factor
        B, C, H, W = g.shape
        return g.reshape(B, C, H // f, f, W // f, f).sum(axis=(3, 5))


def upsample_nearest(x, factor=2):
    """Repeat every pixel ``factor`` times along H and W (DALL-E's decoder upsampling)."""
    return Upsample.apply(x, factor=int(factor))


class MaxPool(Function):
    @staticmethod
    def forward(ctx, x, k):
        B, C, H, W = x.shape
        win = x[:, :, : H - H % k, : W - W % k].reshape(B, C, H // k, k, W // k, k)
        y = win.max(axis=(3, 5))
        ctx.save_for_backward(win, y)
        ctx.shape, ctx.k = x.shape, k
        return y

    @staticmethod
    def backward(ctx, g):
        win, y = ctx.saved
        hit = win == y[:, :, :, None, :, None]
        hit = hit / hit.sum(axis=(3, 5), keepdims=True)  # ties share the gradient
        gw = (hit * g[:, :, :, None, :, None]).astype(g.dtype)
        B, C, H, W = ctx.shape
        out = array_module(g).zeros(ctx.shape, dtype=g.dtype)
        k = ctx.k
        out[:, :, : H - H % k, : W - W % k] = gw.reshape(B, C, (H // k) * k, (W // k) * k)
        return out


def _check_pool(x, kernel_size, name):
    if x.ndim != 4:
        raise ValueError(f"{name} expects (B, C, H, W), got shape {x.shape}")
    if kernel_size < 1 or kernel_size > min(x.shape[2:]):
        raise ValueError(f"{name}: kernel_size {kernel_size} does not fit an image of shape {x.shape}")


def max_pool2d(x, kernel_size=2):
    """Maximum over non-overlapping ``kernel_size`` windows (stride = kernel_size)."""
    _check_pool(x, kernel_size, "max_pool2d")
    return MaxPool.apply(x, k=kernel_size)


def avg_pool2d(x, kernel_size=2):
    """Mean over non-overlapping ``kernel_size`` windows (stride = kernel_size)."""
    _check_pool(x, kernel_size, "avg_pool2d")
    k = kernel_size
    B, C, H, W = x.shape
    x = x[:, :, : H - H % k, : W - W % k]
    return reshape(x, (B, C, H // k, k, W // k, k)).mean(axis=(3, 5))
