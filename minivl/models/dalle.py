"""The DALL-E prior (Ramesh et al. 2021, stage 2; lecture S22, S24, S26-S27):
one causal transformer over a caption followed by the dVAE's image codes.

The token stream (section 2.2) is::

    [t_0 .. t_{L-1}]   [<soi>]   [c_0 .. c_{n-1}]
     caption, BPE ids,   start     image codes of the frozen dVAE encoder,
     padded to L with    of image  raster order (row by row), n = h * w
     a pad token of its
     own per position

and the transformer reads ``stream[:-1]`` (``L + n`` positions). Its input
vocabulary is one table, laid out as

    ``[0, V)`` BPE ids | ``[V, V + L)`` pad of position 0..L-1 | ``V + L`` <soi> | ``[V + L + 1, ...)`` K codes

A pad token per position (rather than one shared pad) is the paper's: the
model then knows where the caption ended, and predicting the pads is part of
the text loss. Positions ``0 .. L-1`` predict the next caption token, over the
text vocabulary only (BPE + pads); positions ``L .. L+n-1`` predict the codes,
over the K image codes only (the logits of every other id are -inf). The loss
is ``1/8`` text cross-entropy + ``7/8`` image cross-entropy (section 2.2:
"weighted by 1/8 and 7/8"), the image being what is wanted.

Image positions may use the paper's sparse attention (section 2.4, figure 11),
on top of the causal mask; the caption and <soi> stay visible to every image
token:

* ``"row"``: the previous ``w`` cells (one image row's worth, the Sparse
  Transformer's strided "row" part);
* ``"column"``: the earlier cells of the same column;
* ``"conv"``: the earlier cells within a ``kernel x kernel`` window
  (the paper: 11 x 11, its last layer);
* ``"sparse"``: the paper's schedule, layer i (1-based) column when
  ``(i - 2) % 4 == 0``, row otherwise, conv in the last layer;
* ``"full"``: plain causal attention (the fused attention kernel).

Position embeddings (``image_positions``): ``"flat"`` gives every stream
position one learned vector of a 1-D table (GPT's), so that "the cell above"
(``w`` positions back) has to be learned from scratch; ``"axial"`` keeps the
1-D table for the caption and <soi> and gives the image token holding cell
``(r, c)`` the sum ``row[r] + column[c]`` of two small learned tables (the
factorised "axial" embedding of the reference implementations, e.g.
DALLE-pytorch; the paper does not spell its own out).

``generate`` samples the codes of a caption with temperature / top-k and a
key/value cache, exactly as the uncached loop would; decoding to pixels is the
dVAE's job (``minivl.recipes.dalle``).

**Classifier-free guidance (a later addition, not DALL-E 1).** Make-A-Scene
(Gafni et al. 2022) and Parti (Yu et al. 2022) sharpen the text condition of
an autoregressive text-to-image transformer: train with the caption dropped
now and then (``drop_captions``: a dropped caption becomes the all-pad stream
``empty_text``, the same per-position pad tokens a short caption ends with), so
that one model gives both ``c``, the next-code logits after the caption, and
``u``, those after the empty caption; sample from ``u + s * (c - u)``.
``generate(guidance=s)``: ``s = 1`` is the paper's sampling exactly (the empty
stream is not even run), ``s = 0`` samples as if the caption were empty, ``s >
1`` pushes away from what the prior would draw without the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.text import CausalTextEncoder, init_weights, sample_next
from minivl.tensor import Tensor, no_grad

ATTENTION = ("full", "row", "column", "conv", "sparse")
IMAGE_POSITIONS = ("flat", "axial")


@dataclass
class DALLEConfig:
    text_vocab: int = 320  # BPE ids (DALL-E: 16,384)
    text_len: int = 16  # L, caption tokens after padding (DALL-E: 256)
    image_vocab: int = 128  # K, dVAE codes (DALL-E: 8,192)
    grid_h: int = 8  # code grid (DALL-E: 32 x 32)
    grid_w: int = 8
    dim: int = 128
    depth: int = 4  # DALL-E: 64
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention: str = "full"  # one of ATTENTION
    kernel: int = 3  # window of "conv" attention
    text_weight: float = 1 / 8
    image_weight: float = 7 / 8
    # "flat": one 1-D table over the stream; "axial": image tokens get row[r] + column[c].
    # "flat" here so that checkpoints saved before the option load as they were trained;
    # the recipe (minivl.recipes.dalle.DEFAULTS) picks "axial".
    image_positions: str = "flat"


def layer_kinds(attention: str, depth: int) -> list[str]:
    """The attention pattern of each of ``depth`` layers."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
    if attention != "sparse":
        return [attention] * depth
    kinds = ["column" if (i - 2) % 4 == 0 else "row" for i in range(1, depth + 1)]
    kinds[-1] = "conv"
    return kinds


def attention_mask(kind: str, text_len: int, grid_h: int, grid_w: int, kernel: int = 3) -> np.ndarray:
    """Boolean ``(N, N)`` mask of the stream's ``N = text_len + grid_h * grid_w`` input positions
    (True = query row may attend to key column).

    Position ``L + j`` predicts cell ``j`` (row ``j // w``, column ``j % w``);
    position ``L + 1 + i`` holds cell ``i``. An image query sees the caption,
    <soi>, itself, and the held cells ``i < j`` its pattern allows.
    """
    L, n = text_len, grid_h * grid_w
    N = L + n
    causal = np.tril(np.ones((N, N), dtype=bool))
    if kind == "full":
        return causal
    if kind not in ("row", "column", "conv"):
        raise ValueError(f"mask kind must be full, row, column or conv, got {kind!r}")
    j = np.arange(n)[:, None]  # (n, 1) cell each image query predicts
    i = np.arange(n - 1)[None, :]  # (1, n-1) cell each image key holds
    if kind == "row":
        allowed = j - i <= grid_w
    elif kind == "column":
        allowed = (j - i) % grid_w == 0
    else:
        r = kernel // 2
        allowed = (np.abs(j // grid_w - i // grid_w) <= r) & (np.abs(j % grid_w - i % grid_w) <= r)
    mask = causal.copy()
    mask[L:, L + 1:] &= allowed  # image queries x held cells (still causal: i < j)
    mask[np.arange(N), np.arange(N)] = True  # every position sees itself
    return mask


class AxialStreamEmbedding(nn.Module):
    """``token[ids] + position`` for the prior's stream, where the position of
    caption slot / <soi> ``p <= L`` is ``text_position[p]`` and that of the
    token holding cell ``i = p - L - 1`` (row ``i // w``, column ``i % w``)
    is ``row[i // w] + column[i % w]``. Same interface as
    ``minivl.models.text.TokenPositionEmbedding`` (``forward(ids, start)``,
    ``token``, ``max_len``), so ``CausalTextEncoder`` and its caches use it unchanged."""

    def __init__(self, vocab_size, text_len, grid_h, grid_w, dim):
        super().__init__()
        self.text_len, self.grid_w = text_len, grid_w
        self.max_len = text_len + grid_h * grid_w  # the stream minus its last code
        self.token = nn.Embedding(vocab_size, dim)
        self.text_position = nn.Embedding(text_len + 1, dim)  # caption slots and <soi>
        self.row = nn.Embedding(grid_h, dim)
        self.column = nn.Embedding(grid_w, dim)

    def positions(self, start, n):
        """``(n, D)`` position vectors of stream positions ``start .. start + n - 1``."""
        p = np.arange(start, start + n)
        text_p, cell = p[p <= self.text_len], p[p > self.text_len] - self.text_len - 1
        parts = []
        if len(text_p):
            parts.append(self.text_position(text_p))  # (n_text, D)
        if len(cell):
            parts.append(self.row(cell // self.grid_w) + self.column(cell % self.grid_w))  # (n_cells, D)
        return parts[0] if len(parts) == 1 else F.concat(parts, axis=0)

    def forward(self, ids, start=0):
        return self.token(ids) + self.positions(start, ids.shape[1])  # (B, N, D)


class DALLE(nn.Module):
    """The stage-2 prior: ``forward(ids (B, N))`` -> logits ``(B, N, vocab_size)``."""

    Config = DALLEConfig

    def __init__(self, config: DALLEConfig | None = None, **overrides):
        super().__init__()
        c = self.config = DALLEConfig(**{**(vars(config) if config else {}), **overrides})
        layer_kinds(c.attention, c.depth)  # validates the name
        if c.image_positions not in IMAGE_POSITIONS:
            raise ValueError(f"image_positions must be one of {IMAGE_POSITIONS}, got {c.image_positions!r}")
        for name in ("text_vocab", "text_len", "image_vocab", "grid_h", "grid_w", "depth"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
        self.transformer = CausalTextEncoder(self.vocab_size, self.max_len, c.dim, c.depth, c.num_heads,
                                             c.mlp_ratio, "gelu_tanh", c.dropout)
        if c.image_positions == "axial":  # swap the 1-D table for text + row + column tables
            self.transformer.embeddings = AxialStreamEmbedding(self.vocab_size, c.text_len, c.grid_h,
                                                               c.grid_w, c.dim)
        self.head = nn.Linear(c.dim, self.vocab_size, bias=False)
        init_weights(self, residual_depth=c.depth)

    # the vocabulary layout

    @property
    def n_image(self) -> int:
        return self.config.grid_h * self.config.grid_w

    @property
    def pad_start(self) -> int:
        return self.config.text_vocab

    @property
    def soi(self) -> int:
        return self.config.text_vocab + self.config.text_len

    @property
    def image_start(self) -> int:
        return self.soi + 1

    @property
    def vocab_size(self) -> int:
        return self.image_start + self.config.image_vocab

    @property
    def max_len(self) -> int:
        """Input positions: the stream minus its last code."""
        return self.config.text_len + self.n_image

    def pad_text(self, token_lists) -> np.ndarray:
        """Lists of BPE ids -> ``(B, L)`` ids, position i past a caption's end holding pad i."""
        L, V = self.config.text_len, self.config.text_vocab
        out = np.tile(np.arange(V, V + L), (len(token_lists), 1))  # (B, L) all pads
        for b, tokens in enumerate(token_lists):
            tokens = list(tokens)
            if len(tokens) > L:
                raise ValueError(f"caption {b} has {len(tokens)} tokens, more than text_len={L}")
            if tokens and (min(tokens) < 0 or max(tokens) >= V):
                raise ValueError(f"caption {b}: BPE ids must lie in [0, {V}), got {tokens}")
            out[b, :len(tokens)] = tokens
        return out

    def empty_text(self, batch: int) -> np.ndarray:
        """``(batch, L)`` empty captions: pad ``i`` at every position ``i`` (``pad_text([[]] * batch)``)."""
        V, L = self.config.text_vocab, self.config.text_len
        return np.tile(np.arange(V, V + L), (batch, 1))

    def drop_captions(self, ids, p: float, generator: np.random.Generator) -> np.ndarray:
        """Caption dropout for classifier-free guidance (not DALL-E 1; see the module
        docstring): a copy of ``ids (B, >= L)`` (captions or full streams) in which each row,
        with probability ``p``, has its ``L`` caption positions replaced by ``empty_text``;
        <soi> and the codes are kept."""
        ids = np.array(ids)
        L = self.config.text_len
        if ids.ndim != 2 or ids.shape[1] < L:
            raise ValueError(f"ids must have shape (B, >= text_len={L}), got {ids.shape}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"caption dropout p must lie in [0, 1], got {p}")
        drop = generator.random(len(ids)) < p  # (B,)
        ids[drop, :L] = self.empty_text(int(drop.sum()))
        return ids

    def stream(self, text, codes) -> np.ndarray:
        """``text (B, L)`` from ``pad_text`` and ``codes (B, h, w)`` in [0, K) -> ``(B, L + 1 + n)``."""
        c = self.config
        text, codes = np.asarray(text), np.asarray(codes)
        if text.ndim != 2 or text.shape[1] != c.text_len:
            raise ValueError(f"text must have shape (B, {c.text_len}), got {text.shape}")
        if codes.shape != (len(text), c.grid_h, c.grid_w):
            raise ValueError(f"codes must have shape ({len(text)}, {c.grid_h}, {c.grid_w}) for text "
                             f"{text.shape}, got {codes.shape}")
        if codes.min() < 0 or codes.max() >= c.image_vocab:
            raise ValueError(f"codes must lie in [0, {c.image_vocab}), got [{codes.min()}, {codes.max()}]")
        soi = np.full((len(text), 1), self.soi)
        return np.concatenate([text, soi, codes.reshape(len(text), -1) + self.image_start], axis=1)

    # attention patterns

    @cached_property
    def masks(self) -> list[np.ndarray | None]:
        """One ``(max_len, max_len)`` boolean mask per layer; None for plain causal (fused kernel)."""
        c = self.config
        return [None if k == "full" else attention_mask(k, c.text_len, c.grid_h, c.grid_w, c.kernel)
                for k in layer_kinds(c.attention, c.depth)]

    def _masks_for(self, start, n):
        if all(m is None for m in self.masks):
            return None
        return [None if m is None else m[start:start + n, :start + n] for m in self.masks]

    @cached_property
    def allowed(self) -> np.ndarray:
        """``(max_len, vocab_size)``: the ids position t may predict."""
        L = self.config.text_len
        out = np.zeros((self.max_len, self.vocab_size), dtype=bool)
        out[:L, :self.soi] = True  # caption positions: BPE ids and pads
        out[L:, self.image_start:] = True  # image positions: codes
        return out

    # forward and loss

    def hidden(self, ids, caches=None):
        start = 0 if caches is None or "k" not in caches[0] else caches[0]["k"].shape[2]
        n = np.asarray(ids).shape[-1] if np.ndim(ids) == 2 else 0
        return self.transformer(ids, caches=caches, attn_mask=self._masks_for(start, n)), start

    def forward(self, ids, caches=None):
        """Logits ``(B, N, vocab_size)`` for the next token of each position; ids the
        position may not predict get -inf (caption positions: text ids; image positions: codes)."""
        h, start = self.hidden(ids, caches)
        logits = self.head(h)  # (B, N, V_all)
        allowed = self.allowed[start:start + logits.shape[1]]  # (N, V_all)
        return F.masked_fill(logits, ~allowed[None], -np.inf)

    def losses(self, ids):
        """``(text_loss, image_loss)`` of full streams ``ids (B, L + 1 + n)``.

        Text: positions ``0 .. L-2`` predict caption tokens ``1 .. L-1`` over
        the text vocabulary (BPE + pads); <soi> is never predicted (it always
        follows). Image: positions ``L .. L+n-1`` predict the n codes over the K codes.
        """
        ids = np.asarray(ids)
        c = self.config
        if ids.ndim != 2 or ids.shape[1] != self.max_len + 1:
            raise ValueError(f"ids must be full streams (B, {self.max_len + 1}) = (B, L + 1 + n), "
                             f"got {ids.shape}")
        h, _ = self.hidden(ids[:, :-1])  # (B, L + n, D)
        L = c.text_len
        w = self.head.weight  # (V_all, D)
        text_logits = F.matmul(h[:, :L - 1], w[:self.soi].T) if L > 1 else None  # (B, L-1, V+L)
        image_logits = F.matmul(h[:, L:], w[self.image_start:].T)  # (B, n, K)
        image_loss = F.cross_entropy(image_logits, ids[:, L + 1:] - self.image_start)
        if text_logits is None:
            return Tensor(np.zeros((), dtype=image_loss.dtype)), image_loss
        return F.cross_entropy(text_logits, ids[:, 1:L]), image_loss

    def code_nll(self, ids) -> np.ndarray:
        """Teacher-forced ``-log p(code | caption, codes before)`` of every image code of full
        streams ``ids (B, L + 1 + n)``: ``(B, n)`` nats (``losses``' image loss is its mean)."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.max_len + 1:
            raise ValueError(f"ids must be full streams (B, {self.max_len + 1}) = (B, L + 1 + n), "
                             f"got {ids.shape}")
        L = self.config.text_len
        with no_grad():
            h, _ = self.hidden(ids[:, :-1])  # (B, L + n, D)
            logits = F.matmul(h[:, L:], self.head.weight[self.image_start:].T).numpy()  # (B, n, K)
        logits = logits.astype(np.float64)
        top = logits.max(axis=-1, keepdims=True)
        log_z = top[..., 0] + np.log(np.exp(logits - top).sum(axis=-1))  # (B, n)
        target = ids[:, L + 1:] - self.image_start  # (B, n)
        return log_z - np.take_along_axis(logits, target[..., None], axis=-1)[..., 0]

    def loss(self, ids):
        """``text_weight * text_loss + image_weight * image_loss`` (1/8 and 7/8)."""
        text, image = self.losses(ids)
        return text * self.config.text_weight + image * self.config.image_weight

    # sampling

    def generate(self, text, temperature=1.0, top_k=None, use_cache=True, generator=None,
                 return_logits=False, guidance=1.0):
        """Sample the codes of captions ``text (B, L)`` (from ``pad_text``) -> ``(B, h, w)`` in [0, K).

        Each code is drawn from the image logits at ``temperature`` (0: greedy),
        cut to the ``top_k`` largest; ``generator`` a ``np.random.Generator``.
        With ``use_cache`` each step feeds only the newest token and reuses the
        keys and values of the earlier ones. ``return_logits``: also the
        ``(B, n, K)`` image logits each code was drawn from.

        ``guidance`` (classifier-free guidance, a later addition: not DALL-E 1):
        ``s = 1`` samples as the paper does. Otherwise the empty caption's stream
        runs beside each caption's (rows ``B .. 2B-1`` of one batch, so each has
        its own cached keys and values), both get every drawn code, and the code
        is drawn from ``u + s * (c - u)`` (``c``: the caption's logits, ``u``:
        the empty caption's), temperature and top-k applied after the mixing.
        """
        if not np.isfinite(guidance):
            raise ValueError(f"guidance must be a finite number, got {guidance}")
        c = self.config
        text = np.asarray(text)
        if text.ndim != 2 or text.shape[1] != c.text_len or text.dtype.kind not in "iu":
            raise ValueError(f"text must be integer ids of shape (B, {c.text_len}), got {text.dtype} {text.shape}")
        if text.min() < 0 or text.max() >= self.soi:
            raise ValueError(f"text ids must lie in [0, {self.soi}) (BPE ids and pads), got "
                             f"[{text.min()}, {text.max()}]")
        B, guided = len(text), guidance != 1
        if guided:  # (2B, L): the captions, then as many empty captions
            text = np.concatenate([text, self.empty_text(B).astype(text.dtype)])
        ids = np.concatenate([text, np.full((len(text), 1), self.soi)], axis=1)  # (B or 2B, L + 1)
        was_training, caches, drawn = self.training, None, []
        self.eval()
        try:
            with no_grad():
                for _ in range(self.n_image):
                    if not use_cache:
                        logits = self(ids)
                    elif caches is None:
                        caches = self.transformer.new_caches()
                        logits = self(ids, caches=caches)
                    else:
                        logits = self(ids[:, -1:], caches=caches)  # only the newest token
                    row = logits.numpy()[:, -1, self.image_start:]  # (B or 2B, K)
                    if guided:
                        cond, uncond = row[:B], row[B:]  # (B, K) each
                        row = uncond + guidance * (cond - uncond)
                    drawn.append(row)
                    code = sample_next(row, temperature, top_k, generator=generator)  # (B,)
                    if guided:
                        code = np.concatenate([code, code])  # the empty stream continues with the same code
                    ids = np.concatenate([ids, (code + self.image_start)[:, None].astype(ids.dtype)], axis=1)
        finally:
            self.train(was_training)
        codes = (ids[:B, c.text_len + 1:] - self.image_start).reshape(B, c.grid_h, c.grid_w)
        return (codes, np.stack(drawn, axis=1)) if return_logits else codes


__all__ = ["ATTENTION", "DALLE", "IMAGE_POSITIONS", "AxialStreamEmbedding", "DALLEConfig", "attention_mask",
           "layer_kinds"]
