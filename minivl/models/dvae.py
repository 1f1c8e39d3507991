"""DALL-E's discrete VAE, stage 1 (lecture S21, S23, S25; Ramesh et al. 2021, sec. 2.1).

An image becomes a small grid of tokens, each one of ``K`` codebook entries:

    images (B, 3, S, S) in [0, 1]
      -> encoder: conv, groups of residual blocks, a max-pool between groups
      -> logits (B, K, h, w)                       one distribution q(z | x) per cell
      -> Gumbel-softmax sample, temperature tau     relaxed one-hot (B, K, h, w)
      -> mixture of codebook vectors (B, D, h, w)   soft "lookup"
      -> decoder: residual blocks, nearest upsampling between groups
      -> stats (B, 6, S, S)                         mu and log b of a logit-Laplace per pixel

Training maximises the ELBO: ``log p(x | z)`` (logit-Laplace on pixels mapped
into [0.1, 0.9], or a Gaussian = MSE) minus ``beta * KL(q(z | x) || uniform)``.
As tau -> 0 (the paper anneals 1 -> 1/16) the relaxed codes become one-hot, so
the decoder learns to read single codes: the prior (stage 2) is then trained
on the argmax codes (``encode_codes``) and its samples drawn through
``decode_codes``.

Reduced from the paper: widths 32-64-128 instead of 256-512-1024-2048, three
groups (two max-pools: 32 x 32 pixels -> 8 x 8 tokens) instead of four
(256 -> 32), K = 512 instead of 8192. The residual blocks keep the paper's
shape: a bottleneck of width out/4 with three 3x3 convolutions and a 1x1
(the encoder's 1x1 last, the decoder's first), scaled by 1 / n_layers**2.

``encoder="patch"`` (not the paper's): the encoder and decoder become per-cell
1x1 layers after a space-to-depth, so a code is computed from its own
``f x f`` pixel patch alone and draws that patch alone. The paper's encoder
sees far around each cell, and at this scale its codes spend most of their
entropy on context (``minivl.recipes.dalle.code_entropy``: 2.7 of the default
dVAE's 3.2 nats per code are not about the code's own 2 x 2 patch); per-patch
codes carry none. Trained with the same ELBO and Gumbel-softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.device import asarray
from minivl.nn import init
from minivl.nn.module import Parameter
from minivl.tensor import Tensor, array_module, no_grad

LIKELIHOODS = ("logit_laplace", "mse")
ENCODERS = ("conv", "patch")
EPS = 0.1  # pixels are mapped into [EPS, 1 - EPS] before the logit-Laplace (paper, sec. A.3)


# ----------------------------------------------------------------------------- the two ELBO terms


def map_pixels(x):
    """[0, 1] -> [EPS, 1 - EPS], so that logit(x) stays finite."""
    return (1 - 2 * EPS) * x + EPS


def unmap_pixels(x):
    """The inverse of ``map_pixels``, clipped to [0, 1]."""
    return np.clip((x - EPS) / (1 - 2 * EPS), 0.0, 1.0)


def logit_laplace_log_prob(x, mu, log_b):
    """log of the logit-Laplace density at ``x`` in (0, 1) (an ndarray, already mapped):

        p(x | mu, b) = exp(-|logit(x) - mu| / b) / (2 b x (1 - x))

    i.e. a Laplace on logit(x), carried to (0, 1) by the sigmoid; ``mu`` and
    ``log_b`` are Tensors of ``x``'s shape. Returns the elementwise log density.
    """
    x = asarray(x.data if isinstance(x, Tensor) else x)  # host or device, kept where it is
    xp = array_module(x)
    logit = Tensor(xp.log(x) - xp.log1p(-x))
    diff = logit - mu
    absolute = F.where(diff.data >= 0, diff, -diff)
    const = Tensor((-math.log(2.0) - xp.log(x) - xp.log1p(-x)).astype(x.dtype))
    return const - log_b - absolute * F.exp(-log_b)


def kl_to_uniform(logits, axis=1):
    """KL(q || uniform over K) = sum_k q_k log q_k + log K, per position; q = softmax(logits)."""
    log_q = F.log_softmax(logits, axis=axis)
    K = logits.shape[axis]
    return (F.exp(log_q) * log_q).sum(axis=axis) + math.log(K)


def usage_kl(logits):
    """KL(q_bar || uniform over K) of the *average* code distribution of a batch,
    q_bar = mean over images and cells of softmax(logits ``(B, K, h, w)``); a scalar.

    Not part of the ELBO: the per-cell KL above lets every cell be confident, and
    at this scale the encoder soon puts all cells on a handful of codes (the
    codebook collapses). Penalising a peaked batch histogram keeps codes in use;
    it is the "diversity loss" wav2vec 2.0 (Baevski et al. 2020, sec. 3.2)
    adds to its Gumbel-softmax codebooks.
    """
    q = F.exp(F.log_softmax(logits, axis=1)).mean(axis=(0, 2, 3))  # (K,)
    return (q * F.log(q + 1e-12)).sum() + math.log(logits.shape[1])


# ----------------------------------------------------------------------------- blocks


class EncoderBlock(nn.Module):
    """``x + gain * res(x)``, res = relu-conv3-relu-conv3-relu-conv3-relu-conv1 (paper, A.2)."""

    def __init__(self, n_in, n_out, gain):
        super().__init__()
        hid = max(n_out // 4, 1)
        self.id_path = nn.Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(
            nn.Conv2d(n_in, hid, 3, padding=1), nn.Conv2d(hid, hid, 3, padding=1),
            nn.Conv2d(hid, hid, 3, padding=1), nn.Conv2d(hid, n_out, 1))
        self.gain = gain

    def forward(self, x):
        h = x
        for conv in self.res_path:
            h = conv(F.relu(h))
        return self.id_path(x) + self.gain * h


class DecoderBlock(EncoderBlock):
    """Unlike EncoderBlock: the 1x1 convolution comes first, the last 3x3 widens to ``n_out``."""

    def __init__(self, n_in, n_out, gain):
        super().__init__(n_in, n_out, gain)
        hid = max(n_out // 4, 1)
        self.res_path = nn.Sequential(
            nn.Conv2d(n_in, hid, 1), nn.Conv2d(hid, hid, 3, padding=1),
            nn.Conv2d(hid, hid, 3, padding=1), nn.Conv2d(hid, n_out, 3, padding=1))


# ----------------------------------------------------------------------------- the model


@dataclass
class DiscreteVAEConfig:
    image_size: int = 32
    in_channels: int = 3
    vocab_size: int = 512  # K, the codebook size
    widths: tuple = (32, 64, 128)  # one group of blocks per width; a max-pool between groups
    blocks_per_group: int = 1
    codebook_dim: int = 128  # D, the width the decoder starts from
    likelihood: str = "logit_laplace"  # or "mse"
    # "conv": the paper's encoder / decoder (residual 3x3 blocks; each code sees, and draws into,
    # its neighbours). "patch": each code is computed from its own f x f pixel patch alone and
    # decodes to that patch alone (1x1 layers after a space-to-depth; f = 2 ** (len(widths) - 1),
    # hidden width widths[-1]). Not the paper's: see the module docstring.
    encoder: str = "conv"

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        factor = 2 ** (len(self.widths) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} is not divisible by the downsampling "
                             f"factor {factor} of {len(self.widths)} groups")


class DiscreteVAE(nn.Module):
    """Encoder to ``K`` logits per cell of an ``(h, w)`` grid; decoder from codes to pixels."""

    Config = DiscreteVAEConfig

    def __init__(self, config: DiscreteVAEConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or DiscreteVAEConfig(**kwargs)
        widths, C = config.widths, config.in_channels
        if config.encoder == "patch":
            self._init_patch()
            return
        gain = 1.0 / (len(widths) * config.blocks_per_group) ** 2
        # encoder: (B, C, S, S) -> (B, K, h, w)
        self.enc_in = nn.Conv2d(C, widths[0], 3, padding=1)
        enc, n = [], widths[0]
        for w in widths:
            for _ in range(config.blocks_per_group):
                enc.append(EncoderBlock(n, w, gain))
                n = w
        self.enc_blocks = nn.ModuleList(enc)
        self.enc_out = nn.Conv2d(widths[-1], config.vocab_size, 1)
        # no bias at init and 4x the weights: the default random per-code offset is as large as
        # the input-dependent part of the logits (std ~0.1), so cells tend to start on the same
        # few codes. A precaution: on its own it did not decide whether a short run collapsed.
        self.enc_out.bias.data[:] = 0.0
        self.enc_out.weight.data *= 4.0
        # the codebook: row k is the vector code k stands for
        self.codebook = Parameter(init.normal((config.vocab_size, config.codebook_dim), 1.0))
        # decoder: (B, D, h, w) -> (B, 2C, S, S)
        dec, n = [], config.codebook_dim
        for w in reversed(widths):
            for _ in range(config.blocks_per_group):
                dec.append(DecoderBlock(n, w, gain))
                n = w
        self.dec_blocks = nn.ModuleList(dec)
        self.dec_out = nn.Conv2d(widths[0], 2 * C, 1)

    def _init_patch(self):
        """Per-cell layers (``encoder="patch"``): space-to-depth, then 1x1 convolutions only."""
        c, C, f = self.config, self.config.in_channels, self.factor
        w = c.widths[-1]
        self.enc_in = nn.Conv2d(C * f * f, w, 1)
        self.enc_blocks = nn.ModuleList([nn.Conv2d(w, w, 1)])
        self.enc_out = nn.Conv2d(w, c.vocab_size, 1)
        self.enc_out.bias.data[:] = 0.0
        self.enc_out.weight.data *= 4.0
        self.codebook = Parameter(init.normal((c.vocab_size, c.codebook_dim), 1.0))
        self.dec_blocks = nn.ModuleList([nn.Conv2d(c.codebook_dim, w, 1), nn.Conv2d(w, w, 1)])
        self.dec_out = nn.Conv2d(w, 2 * C * f * f, 1)

    @property
    def factor(self) -> int:
        """Pixels per code along each side: ``2 ** (len(widths) - 1)``."""
        return 2 ** (len(self.config.widths) - 1)

    def init_output_bias(self, mean_pixel):
        """Start the decoder at the mean picture: mu's bias = the logit of the mean pixel
        ``(C,)`` (mapped into [EPS, 1 - EPS] for logit-Laplace), log b's bias = 0. Without it
        sigmoid(mu) starts near 0.5 on mostly black images, and the first steps drive mu so
        far negative that the sigmoid saturates and the decoder stays black."""
        m = np.clip(np.asarray(mean_pixel, np.float64).reshape(-1), 1e-3, 1 - 1e-3)
        if m.shape != (self.config.in_channels,):
            raise ValueError(f"mean_pixel must have {self.config.in_channels} values, got shape {m.shape}")
        if self.config.likelihood == "logit_laplace":
            m = map_pixels(m)
        C = self.config.in_channels
        rep = self.factor ** 2 if self.config.encoder == "patch" else 1  # channels (2C, f, f) there
        self.dec_out.bias.data[:C * rep] = np.repeat(np.log(m / (1 - m)), rep)
        self.dec_out.bias.data[C * rep:] = 0.0
        return self

    # ------------------------------------------------------------------ shapes

    @property
    def K(self) -> int:
        return self.config.vocab_size

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // self.factor
        return side, side

    def extra_repr(self):
        return f"K={self.K}, grid={self.grid}, likelihood={self.config.likelihood}"

    # ------------------------------------------------------------------ the two halves

    def _check_images(self, images) -> Tensor:
        x = images if isinstance(images, Tensor) else Tensor(images)  # host or device
        S, C = self.config.image_size, self.config.in_channels
        if x.ndim != 4 or x.shape[1:] != (C, S, S):
            raise ValueError(f"images must be (B, {C}, {S}, {S}) floats in [0, 1], got shape "
                             f"{x.shape}; uint8 (B, H, W, C) batches go through dvae.pixels()")
        if x.dtype.kind != "f":
            raise ValueError(f"images must be floating point in [0, 1], got dtype {x.dtype}; "
                             "use dvae.pixels()")
        return x

    def encode(self, images) -> Tensor:
        """Logits of q(z | x): ``(B, C, S, S)`` in [0, 1] -> ``(B, K, h, w)``."""
        x = self._check_images(images)
        if self.config.encoder == "patch":
            h = self.enc_in(space_to_depth(map_pixels(x) - 0.5, self.factor))  # (B, w, h, w)
            for layer in self.enc_blocks:
                h = layer(F.relu(h))
            return self.enc_out(F.relu(h))  # (B, K, h, w): each cell from its own patch
        h = self.enc_in(map_pixels(x) - 0.5)  # (B, w0, S, S)
        per_group = self.config.blocks_per_group
        for i, block in enumerate(self.enc_blocks):
            h = block(h)
            if (i + 1) % per_group == 0 and i + 1 < len(self.enc_blocks):
                h = F.max_pool2d(h, 2)  # halve the grid between groups
        return self.enc_out(F.relu(h))  # (B, K, h, w)

    def decode(self, codes_soft) -> Tensor:
        """Decoder statistics from (relaxed) one-hot codes ``(B, K, h, w)`` -> ``(B, 2C, S, S)``:
        channels [0, C) are mu, [C, 2C) are log b of the logit-Laplace (mu alone for MSE)."""
        z = F.matmul(F.transpose(codes_soft, (0, 2, 3, 1)), self.codebook)  # (B, h, w, D)
        h = F.transpose(z, (0, 3, 1, 2))  # (B, D, h, w): the mixture of codebook vectors
        if self.config.encoder == "patch":
            for layer in self.dec_blocks:
                h = F.relu(layer(h))
            return depth_to_space(self.dec_out(h), self.factor)  # (B, 2C, S, S): each cell its patch
        per_group = self.config.blocks_per_group
        for i, block in enumerate(self.dec_blocks):
            h = block(h)
            if (i + 1) % per_group == 0 and i + 1 < len(self.dec_blocks):
                h = F.upsample_nearest(h, 2)  # double the grid between groups
        return self.dec_out(F.relu(h))  # (B, 2C, S, S)

    def forward(self, images, tau=1.0, hard=False) -> Tensor:
        """Decoder statistics of a Gumbel-softmax sample of the codes of ``images``."""
        logits = self.encode(images)  # (B, K, h, w)
        return self.decode(F.gumbel_softmax(logits, tau, hard=hard, axis=1))

    # ------------------------------------------------------------------ the ELBO

    def elbo_terms(self, images, tau=1.0, hard=False) -> tuple[Tensor, Tensor]:
        """Per image: ``-log p(x | z)`` (nats, summed over pixels and channels) and
        ``KL(q(z | x) || uniform)`` (nats, summed over cells); both ``(B,)`` Tensors."""
        nll, kl, _ = self._terms(images, tau, hard)
        return nll, kl

    def _terms(self, images, tau, hard):
        x = self._check_images(images)
        logits = self.encode(x)  # (B, K, h, w)
        stats = self.decode(F.gumbel_softmax(logits, tau, hard=hard, axis=1))  # (B, 2C, S, S)
        nll = self.reconstruction_nll(x.data, stats)  # (B,)
        kl = kl_to_uniform(logits, axis=1).sum(axis=(1, 2))  # (B,)
        return nll, kl, logits

    def reconstruction_nll(self, x, stats) -> Tensor:
        """``-log p(x | z)`` per image, ``(B,)`` nats summed over pixels and channels, of
        pixels ``x (B, C, S, S)`` in [0, 1] (an array) under the decoder's ``stats (B, 2C, S, S)``."""
        C = self.config.in_channels
        mu = stats[:, :C]
        if self.config.likelihood == "logit_laplace":
            log_p = logit_laplace_log_prob(map_pixels(x), mu, stats[:, C:])
        else:  # Gaussian of unit variance on [0, 1] pixels, up to a constant: MSE / 2
            diff = F.sigmoid(mu) - Tensor(x)
            log_p = -0.5 * diff * diff
        return -log_p.sum(axis=(1, 2, 3))

    def loss(self, images, tau=1.0, beta=1.0, hard=False, diversity=0.0) -> Tensor:
        """The negative ELBO per pixel-channel, ``(nll + beta * KL) / (C S S)``, batch mean,
        plus ``diversity * usage_kl(logits)`` (0 by default: the plain ELBO)."""
        nll, kl, logits = self._terms(images, tau, hard)
        dims = self.config.in_channels * self.config.image_size ** 2
        loss = ((nll + beta * kl) * (1.0 / dims)).mean()
        return loss + diversity * usage_kl(logits) if diversity else loss

    # ------------------------------------------------------------------ the API of stage 2

    def encode_codes(self, images) -> np.ndarray:
        """The tokens of ``images``: argmax codes ``(B, h, w)`` int64."""
        with no_grad():
            return self.encode(images).numpy().argmax(axis=1).astype(np.int64)

    def decode_codes(self, codes) -> np.ndarray:
        """Pixels ``(B, C, S, S)`` in [0, 1] of a grid of codes ``(B, h, w)``."""
        codes = np.asarray(codes)
        if codes.ndim != 3 or codes.shape[1:] != self.grid or codes.dtype.kind not in "iu":
            raise ValueError(f"codes must be an integer array (B, {self.grid[0]}, {self.grid[1]}), "
                             f"got {codes.dtype} {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.K):
            raise ValueError(f"codes must lie in [0, {self.K}), got [{codes.min()}, {codes.max()}]")
        one_hot = np.moveaxis(np.eye(self.K, dtype=np.float32)[codes], -1, 1)  # (B, K, h, w)
        with no_grad():
            return self.pixels_from_stats(self.decode(Tensor(one_hot)))

    def reconstruct(self, images) -> np.ndarray:
        """``decode_codes(encode_codes(images))``: what the prior's tokens can show."""
        return self.decode_codes(self.encode_codes(images))

    def pixels_from_stats(self, stats) -> np.ndarray:
        """The decoder's picture: sigmoid(mu), mapped back from [EPS, 1 - EPS] for logit-Laplace."""
        mu = stats.numpy()[:, : self.config.in_channels]
        p = 1.0 / (1.0 + np.exp(-mu))
        return unmap_pixels(p) if self.config.likelihood == "logit_laplace" else p


def space_to_depth(x, f):
    """``(B, C, S, S)`` -> ``(B, C f f, S/f, S/f)``: channel ``(c, i, j)`` of cell ``(r, s)`` is
    pixel ``(f r + i, f s + j)`` of channel ``c``."""
    B, C, H, W = x.shape
    h = F.reshape(x, (B, C, H // f, f, W // f, f))
    return F.reshape(F.transpose(h, (0, 1, 3, 5, 2, 4)), (B, C * f * f, H // f, W // f))


def depth_to_space(x, f):
    """The inverse of ``space_to_depth``: ``(B, C f f, h, w)`` -> ``(B, C, f h, f w)``."""
    B, Cff, h, w = x.shape
    C = Cff // (f * f)
    y = F.reshape(x, (B, C, f, f, h, w))
    return F.reshape(F.transpose(y, (0, 1, 4, 2, 5, 3)), (B, C, h * f, w * f))


def pixels(images) -> np.ndarray:
    """uint8 ``(B, H, W, C)`` renders -> float32 ``(B, C, H, W)`` in [0, 1], the dVAE's input."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"pixels expects uint8 images (B, H, W, C), got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def to_uint8(x) -> np.ndarray:
    """Float ``(B, C, H, W)`` in [0, 1] -> uint8 ``(B, H, W, C)`` for plotting and the judge."""
    return np.clip(np.round(np.asarray(x).transpose(0, 2, 3, 1) * 255), 0, 255).astype(np.uint8)
