"""ViLBERT (Lu et al., 2019): a text stream and a visual stream joined by
co-attention, and the baselines it is compared with (lectures S03-S09).

    words   ids (B, T)  -> BERT embeddings -> BERT blocks ----+---- ... -> text (B, T, Dt)
                                                            co-attention (S06)
    regions feats (B, 1+R, D), locs (B, 1+R, 5)               |
            -> Linear(feat) + Linear(loc), LayerNorm (S05) -> visual blocks -> visual (B, 1+R, Dv)

* The text stream is BERT's (``minivl/models/bert.py``): its embeddings,
  post-LN blocks and tied masked-word head, so ``load_bert`` copies a
  pretrained minivl BERT (or ``BERT.from_hf``'s) into it (S03).
* The visual stream has its own width ``visual_dim`` and depth; its token 0
  is [IMG] (mean region feature, location [0, 0, 1, 1, 1]; made by
  ``minivl/data/regions.py``).
* ``co_attention_at``: pairs ``(t, v)``: a ``CoAttentionBlock`` runs just
  before text block ``t`` and visual block ``v`` (``t = text_depth`` means
  after the last one), as ViLBERT's ``t_biattention_id / v_biattention_id``.
  The default, ``((1, 0), (1, 1))``, is the paper's placement at two blocks
  a stream: the first co-attention layer after some text blocks and before
  any visual block, the last one before the last block of each stream, so
  each stream ends on a block of its own (the paper's ``((6, 0), (7, 1),
  ..., (11, 5))`` of 12 text and 6 visual blocks). Until 2026-12-05 it was
  ``((1, 0), (2, 1))``, whose text stream ended on co-attention.
* Pooled outputs: token 0 of each stream -> Linear(pool_dim) -> ReLU; the
  fused vector is their element-wise product (S09).
* Heads: alignment Linear(2) on the fused vector (S09), the masked-word head,
  and the masked-region head (dense, GELU, LayerNorm, Linear over the
  detector's classes; S08).

``encode(ids, text_mask, feats, locs, region_mask)`` returns ``Streams`` (the
two hidden states and the two pooled vectors); ``forward`` returns one
Tensor, the fused vector ``(B, pool_dim)``. The baselines ``SingleStream``
(one transformer over [words; regions]), ``LateFusion`` (the two streams,
no co-attention) and ``TextOnly`` (no image at all) have the same methods,
heads and config, so recipes swap them freely; ``matched_config`` picks
their depths so their parameter counts come close to ViLBERT's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.bert import BertEmbeddings, MaskedLMHead
from minivl.models.inputs import check_ids, check_like_ids
from minivl.models.text import init_weights
from minivl.tensor import Tensor

N_LOCATION = 5  # [x1/W, y1/H, x2/W, y2/H, area fraction]
# The 5-d location is standardised before its Linear (see VisualEmbedding): per-dimension mean
# and standard deviation of the regions of the shapes world's reference scenes
# (``minivl.data.regions.location_stats``; a test checks these figures against it).
LOCATION_MEAN = (0.375, 0.365, 0.622, 0.613, 0.065)
LOCATION_STD = (0.238, 0.238, 0.239, 0.239, 0.031)
LOCATION_CLIP = 3.0  # standardised values are squashed into (-3, 3) (the [IMG] area, 1.0, would be ~30)
POOLER_BIAS = 1.0  # initial bias of both poolers, see _TwoStreamModel.__init__


@dataclass
class ViLBERTConfig:
    vocab_size: int = 512
    max_len: int = 64
    type_vocab_size: int = 2
    text_dim: int = 64  # BERT-base: 768
    text_depth: int = 2  # 12 (SingleStream: the depth of its one stack)
    text_heads: int = 4
    text_mlp_dim: int = 256
    feat_dim: int = 64  # region feature width (Faster R-CNN: 2048)
    visual_dim: int = 48  # 1024
    visual_depth: int = 2  # 6
    visual_heads: int = 4
    visual_mlp_dim: int = 192
    co_dim: int = 64  # the co-attention width (bi_hidden_size 1024)
    co_heads: int = 4
    co_attention_at: tuple = ((1, 0), (1, 1))  # original: ((6, 0), (7, 1), ..., (11, 5))
    pool_dim: int = 64
    n_region_classes: int = 36  # detector classes (Visual Genome: 1601)
    dropout: float = 0.1
    eps: float = 1e-12
    # How the 5-d location enters (S05; see VisualEmbedding): standardised with these
    # statistics and squashed into (-clip, clip) (clip 0: not squashed), then a Linear whose
    # weights start at location_init_std (None: matched to the feature Linear's output scale).
    # The paper's raw input and BERT init: mean 0, std 1, clip 0, location_init_std 0.02.
    location_mean: tuple = LOCATION_MEAN
    location_std: tuple = LOCATION_STD
    location_clip: float = LOCATION_CLIP
    location_init_std: float | None = None

    def __post_init__(self):
        self.co_attention_at = tuple(tuple(int(i) for i in pair) for pair in self.co_attention_at)
        self.location_mean = tuple(float(v) for v in self.location_mean)
        self.location_std = tuple(float(v) for v in self.location_std)
        if len(self.location_mean) != N_LOCATION or len(self.location_std) != N_LOCATION or min(self.location_std) <= 0:
            raise ValueError(f"location_mean and location_std must be {N_LOCATION} numbers (std > 0), "
                             f"got {self.location_mean}, {self.location_std}")


@dataclass
class Streams:
    """What ``encode`` returns; ``fused = pooled_text * pooled_image``."""

    text: Tensor  # (B, T, text_dim)
    visual: Tensor  # (B, 1+R, visual_dim)
    pooled_text: Tensor  # (B, pool_dim)
    pooled_image: Tensor  # (B, pool_dim)

    @property
    def fused(self) -> Tensor:
        return self.pooled_text * self.pooled_image  # (B, pool_dim)


class VisualEmbedding(nn.Module):
    """LayerNorm(Linear(feature) + Linear(scaled 5-d location)), then dropout (S05).

    The paper feeds the raw location ``[x1/W, y1/H, x2/W, y2/H, area]`` to a
    Linear(5) initialised like every BERT weight (std 0.02). Here, as the
    region features are (``minivl/data/regions.py``), the location is first
    standardised per dimension (``mean``, ``std``: fixed, from reference scenes)
    and squashed into ``(-clip, clip)`` by ``clip * tanh(z / clip)`` (so the
    [IMG] token's area of 1 stays a few units, not ~30). Why: raw, the
    location varies ~0.24 per coordinate and 0.03 in area, and through a
    5-input Linear its part of the sum varied over regions 12 times less than
    the 64-input feature's (0.009 vs 0.108 at initialisation; 0.019-0.023 vs
    0.43-0.45 after 3000 pretraining steps). Through LayerNorm and the visual
    blocks of the pretrained model a ridge probe then read a region's x-centre
    at R^2 0.21-0.23 and its size at 78-80%, below the 82% of the detector
    feature alone, which carries no position (x-centre R^2 0.00: the RoI
    feature is a mean over the box); FOIL's size and relation swaps sat at
    chance (``results/vilbert_location_probe.json``,
    ``minivl/recipes/vilbert_probe.py``). So
    the model also calls ``init_location``: the location Linear starts at std
    ``0.02 * sqrt(feat_dim / 5)`` instead of 0.02, so that both parts of the sum
    start at one scale (``lectures/08-vilbert.md``). The paper's input and init:
    ``ViLBERTConfig(location_mean=(0,) * 5, location_std=(1,) * 5,
    location_clip=0, location_init_std=0.02)``.
    """

    def __init__(self, feat_dim, dim, dropout=0.1, eps=1e-12, mean=(0.0,) * N_LOCATION,
                 std=(1.0,) * N_LOCATION, clip: float = 0.0):
        super().__init__()
        self.feature = nn.Linear(feat_dim, dim)
        self.location = nn.Linear(N_LOCATION, dim)
        self.ln = nn.LayerNorm(dim, eps)
        self.drop = nn.Dropout(dropout)
        self.clip = float(clip)
        self.register_buffer("location_mean", np.asarray(mean, np.float32))  # (5,)
        self.register_buffer("location_scale", 1 / np.asarray(std, np.float32))  # (5,)

    def scale_locations(self, locs):
        """``(B, N, 5)`` locations -> standardised and squashed ``(B, N, 5)``."""
        dtype = locs.dtype  # float64 in the gradchecks
        z = (locs - Tensor(self.location_mean.astype(dtype))) * Tensor(self.location_scale.astype(dtype))
        return F.tanh(z * (1 / self.clip)) * self.clip if self.clip else z

    def init_location(self, std: float | None, base_std: float = 0.02) -> None:
        """Location weights ~ N(0, std^2); ``None``: ``base_std * sqrt(feat_dim / 5)``, so with
        unit-variance inputs on both sides the two Linear outputs start at one scale."""
        if std is None:
            std = base_std * float(np.sqrt(self.feature.weight.shape[1] / N_LOCATION))
        self.location.weight.data[...] = nn.init.normal(self.location.weight.shape, std)

    def forward(self, feats, locs):
        return self.drop(self.ln(self.feature(feats) + self.location(self.scale_locations(locs))))  # (B, 1+R, dim)


class RegionHead(nn.Module):
    """dense -> GELU -> LayerNorm -> logits over the detector's classes (S08)."""

    def __init__(self, dim, n_classes, eps=1e-12):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.ln = nn.LayerNorm(dim, eps)
        self.decoder = nn.Linear(dim, n_classes)

    def forward(self, hidden):
        return self.decoder(self.ln(F.gelu(self.dense(hidden))))  # (B, 1+R, n_classes)


def _visual_embedding(c, dim):
    return VisualEmbedding(c.feat_dim, dim, c.dropout, c.eps, c.location_mean, c.location_std, c.location_clip)


def _blocks(dim, depth, heads, mlp_dim, c):
    return nn.ModuleList(nn.TransformerBlock(dim, heads, norm_first=False, activation="gelu",
                                             dropout=c.dropout, eps=c.eps, mlp_dim=mlp_dim)
                         for _ in range(depth))


def _run(blocks, x, mask):
    for block in blocks:
        x = block(x, key_padding_mask=mask)
    return x


class _TwoStreamModel(nn.Module):
    """The parts every model shares: embeddings, poolers, heads, input checks, BERT loading."""

    Config = ViLBERTConfig
    text_stack = "text_blocks"  # the attribute holding the blocks BERT's encoder is copied into
    sees_image = True

    def __init__(self, config: ViLBERTConfig | None = None, **overrides):
        super().__init__()
        c = self.config = ViLBERTConfig(**{**(vars(config) if config else {}), **overrides})
        self.text_embeddings = BertEmbeddings(c.vocab_size, c.max_len, c.type_vocab_size, c.text_dim,
                                              c.dropout, c.eps)
        self.build(c)
        width = self.visual_width
        self.text_pooler = nn.Linear(c.text_dim, c.pool_dim)
        self.visual_pooler = nn.Linear(width, c.pool_dim)
        self.alignment = nn.Linear(c.pool_dim, 2)
        self.mlm = MaskedLMHead(c.text_dim, self.text_embeddings.token.weight, c.eps)
        self.region_head = RegionHead(width, c.n_region_classes, c.eps)
        init_weights(self)
        # The fused vector is a product of two ReLU poolers: the gradient each pooler gets
        # is scaled by the other, so at BERT's std 0.02 it starts ~100x too small, and a
        # unit dead in either pooler is dead in the product (seen: all units dead after 50
        # steps at lr 5e-3). The poolers and the alignment head keep Linear's fan-in
        # initialisation, and the poolers start with a positive bias (POOLER_BIAS), every
        # unit alive in both streams.
        for layer in (self.text_pooler, self.visual_pooler, self.alignment):
            layer.weight.data[...] = nn.init.uniform_fan_in(layer.weight.shape, layer.weight.shape[1])
        self.text_pooler.bias.data[...] = self.visual_pooler.bias.data[...] = POOLER_BIAS
        if hasattr(self, "visual_embeddings"):  # TextOnly has none
            self.visual_embeddings.init_location(c.location_init_std)

    @property
    def visual_width(self) -> int:
        return self.config.visual_dim

    # ------------------------------------------------------------------ the public methods
    def encode(self, ids, text_mask, feats, locs, region_mask, segment_ids=None) -> Streams:
        """Both streams and their pooled vectors; see the module docstring for the shapes.

        ``text_mask (B, T)`` and ``region_mask (B, 1+R)``: True for real tokens.
        """
        ids, text_mask, feats, locs, region_mask, segment_ids = self._check(
            ids, text_mask, feats, locs, region_mask, segment_ids)
        text = self.text_embeddings(ids, segment_ids)  # (B, T, Dt)
        text, visual = self.streams(text, text_mask, feats, locs, region_mask)
        pooled_text = F.relu(self.text_pooler(text[:, 0]))  # (B, P)
        pooled_image = F.relu(self.visual_pooler(visual[:, 0]))  # (B, P)
        return Streams(text, visual, pooled_text, pooled_image)

    def forward(self, ids, text_mask, feats, locs, region_mask, segment_ids=None):
        """The fused vector ``pooled_text * pooled_image`` ``(B, pool_dim)``."""
        return self.encode(ids, text_mask, feats, locs, region_mask, segment_ids).fused

    def alignment_logits(self, streams: Streams):
        """Does the caption describe the image? ``(B, 2)``: [no, yes] (S09)."""
        return self.alignment(streams.fused)

    def mlm_logits(self, streams: Streams):
        """Vocabulary logits of every word position ``(B, T, V)`` (S08)."""
        return self.mlm(streams.text)

    def region_logits(self, streams: Streams):
        """Detector-class logits of every region token ``(B, 1+R, n_region_classes)`` (S08)."""
        return self.region_head(streams.visual)

    def load_bert(self, bert) -> list[str]:
        """Copy a BERT's embeddings, blocks and masked-word head into the text stream.

        The BERT must have this model's text width, heads, MLP width and
        vocabulary; a shorter BERT fills the first blocks (the rest keep their
        initialisation); a longer position table is cut to ``max_len``.
        Returns the names copied.
        """
        c, b = self.config, bert.config
        mlp = int(b.dim * b.mlp_ratio)
        if (b.dim, b.num_heads, b.vocab_size, mlp) != (c.text_dim, c.text_heads, c.vocab_size, c.text_mlp_dim):
            raise ValueError(f"load_bert: BERT (dim {b.dim}, heads {b.num_heads}, vocab {b.vocab_size}, mlp {mlp}) "
                             f"does not fit the text stream (dim {c.text_dim}, heads {c.text_heads}, "
                             f"vocab {c.vocab_size}, mlp {c.text_mlp_dim})")
        stack = getattr(self, self.text_stack)
        if b.depth > len(stack):
            raise ValueError(f"load_bert: BERT has {b.depth} blocks, the text stream only {len(stack)}")
        mine = self.state_dict()
        state = {}
        for name, value in bert.state_dict().items():
            head, _, rest = name.partition(".")
            target = {"embeddings": "text_embeddings", "mlm": "mlm", "encoder": self.text_stack}.get(head)
            if target is None:
                continue  # the pooler: ViLBERT pools with its own Linear + ReLU
            key = f"{target}.{rest.removeprefix('blocks.')}" if head == "encoder" else f"{target}.{rest}"
            state[key] = value[: mine[key].shape[0]] if key.endswith("position.weight") else value
        self.load_state_dict(state, strict=False)
        return sorted(state)

    # ------------------------------------------------------------------ inside
    def _check(self, ids, text_mask, feats, locs, region_mask, segment_ids):
        c = self.config
        ids = check_ids(ids, c.vocab_size)
        if ids.shape[1] > c.max_len:
            raise ValueError(f"ids {ids.shape}: {ids.shape[1]} tokens exceed max_len={c.max_len}")
        text_mask = check_like_ids(text_mask, ids, "text_mask", bool)
        segment_ids = check_like_ids(segment_ids, ids, "segment_ids")
        if segment_ids is not None:
            check_ids(segment_ids, c.type_vocab_size, "segment_ids")
        feats = feats if isinstance(feats, Tensor) else Tensor(feats, dtype=np.float32)  # host or device
        locs = locs if isinstance(locs, Tensor) else Tensor(locs, dtype=np.float32)
        B = ids.shape[0]
        if feats.ndim != 3 or feats.shape[0] != B or feats.shape[2] != c.feat_dim:
            raise ValueError(f"feats must be (B={B}, 1+R, feat_dim={c.feat_dim}), got {feats.shape}")
        if locs.shape != (*feats.shape[:2], N_LOCATION):
            raise ValueError(f"locs must be (B, 1+R, 5) = {(*feats.shape[:2], N_LOCATION)}, got {locs.shape}")
        if not isinstance(region_mask, np.ndarray) or region_mask.shape != feats.shape[:2]:
            raise ValueError(f"region_mask must be a NumPy bool array {feats.shape[:2]} (B, 1+R), got "
                             f"{getattr(region_mask, 'shape', type(region_mask).__name__)}")
        return ids, text_mask, feats, locs, region_mask.astype(bool, copy=False), segment_ids

    def build(self, c):  # pragma: no cover - abstract
        raise NotImplementedError

    def streams(self, text, text_mask, feats, locs, region_mask):  # pragma: no cover - abstract
        raise NotImplementedError


class ViLBERT(_TwoStreamModel):
    """Two streams and co-attention; see the module docstring."""

    def build(self, c):
        for t, v in c.co_attention_at:
            if not (0 <= t <= c.text_depth and 0 <= v <= c.visual_depth):
                raise ValueError(f"co_attention_at {c.co_attention_at}: ({t}, {v}) outside text_depth="
                                 f"{c.text_depth}, visual_depth={c.visual_depth}")
        if list(c.co_attention_at) != sorted(c.co_attention_at) or any(
                a[1] > b[1] for a, b in zip(c.co_attention_at, c.co_attention_at[1:])):
            raise ValueError(f"co_attention_at {c.co_attention_at} must be increasing in both streams")
        self.visual_embeddings = _visual_embedding(c, c.visual_dim)
        self.text_blocks = _blocks(c.text_dim, c.text_depth, c.text_heads, c.text_mlp_dim, c)
        self.visual_blocks = _blocks(c.visual_dim, c.visual_depth, c.visual_heads, c.visual_mlp_dim, c)
        self.co_blocks = nn.ModuleList(
            nn.CoAttentionBlock(c.text_dim, c.visual_dim, c.co_heads, c.co_dim, c.text_mlp_dim,
                                c.visual_mlp_dim, dropout=c.dropout, eps=c.eps)
            for _ in c.co_attention_at)

    def streams(self, text, text_mask, feats, locs, region_mask):
        visual = self.visual_embeddings(feats, locs)  # (B, 1+R, Dv)
        t_done = v_done = 0
        for (t, v), co in zip(self.config.co_attention_at, self.co_blocks):
            text = _run(self.text_blocks[t_done:t], text, text_mask)
            visual = _run(self.visual_blocks[v_done:v], visual, region_mask)
            text, visual = co.exchange(text, visual, text_mask, region_mask)
            t_done, v_done = t, v
        return _run(self.text_blocks[t_done:], text, text_mask), _run(self.visual_blocks[v_done:], visual, region_mask)


class LateFusion(_TwoStreamModel):
    """The two streams side by side, no co-attention: they meet only in ``fused``."""

    def build(self, c):
        self.visual_embeddings = _visual_embedding(c, c.visual_dim)
        self.text_blocks = _blocks(c.text_dim, c.text_depth, c.text_heads, c.text_mlp_dim, c)
        self.visual_blocks = _blocks(c.visual_dim, c.visual_depth, c.visual_heads, c.visual_mlp_dim, c)

    def streams(self, text, text_mask, feats, locs, region_mask):
        visual = self.visual_embeddings(feats, locs)
        return _run(self.text_blocks, text, text_mask), _run(self.visual_blocks, visual, region_mask)


class SingleStream(_TwoStreamModel):
    """One transformer over [words; regions] (VisualBERT / UNITER style): the regions
    are embedded at the text width and every token attends to every token."""

    text_stack = "blocks"

    @property
    def visual_width(self) -> int:
        return self.config.text_dim

    def build(self, c):
        self.visual_embeddings = _visual_embedding(c, c.text_dim)
        self.blocks = _blocks(c.text_dim, c.text_depth, c.text_heads, c.text_mlp_dim, c)

    def streams(self, text, text_mask, feats, locs, region_mask):
        T = text.shape[1]
        x = F.concat([text, self.visual_embeddings(feats, locs)], axis=1)  # (B, T + 1+R, Dt)
        mask = np.concatenate([np.ones(text.shape[:2], bool) if text_mask is None else text_mask,
                               region_mask], axis=1)
        x = _run(self.blocks, x, mask)
        return x[:, :T], x[:, T:]


class TextOnly(_TwoStreamModel):
    """The blind baseline: the text stream alone. Its "visual" states are one learned
    vector repeated over the region slots, so a head that reads them learns nothing
    about the image (scores per region are all equal)."""

    sees_image = False

    def build(self, c):
        self.text_blocks = _blocks(c.text_dim, c.text_depth, c.text_heads, c.text_mlp_dim, c)
        self.blank = nn.Parameter(np.zeros((1, 1, c.visual_dim), np.float32))

    def streams(self, text, text_mask, feats, locs, region_mask):
        B, N = region_mask.shape
        return _run(self.text_blocks, text, text_mask), F.expand(self.blank, (B, N, self.config.visual_dim))


MODELS = {"vilbert": ViLBERT, "single_stream": SingleStream, "late_fusion": LateFusion, "text_only": TextOnly}


def count_parameters(kind: str, config: ViLBERTConfig) -> int:
    """Parameters of the ``kind`` model (a key of ``MODELS``) built from ``config``."""
    return MODELS[kind](config).num_parameters()


def matched_config(kind: str, config: ViLBERTConfig, max_depth: int = 8) -> ViLBERTConfig:
    """``config`` with the depths of the ``kind`` baseline chosen so its parameter
    count is closest to ViLBERT's with ``config``.

    Only depths change (never widths), so a pretrained BERT still fits the
    first text blocks. SingleStream and TextOnly vary ``text_depth``;
    LateFusion varies ``text_depth`` and ``visual_depth`` (at least the
    ViLBERT's, the co-attention layers' weight going into extra blocks).
    """
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    if kind == "vilbert":
        return config
    target = count_parameters("vilbert", config)
    if kind == "late_fusion":
        options = [replace(config, text_depth=t, visual_depth=v)
                   for t in range(config.text_depth, max_depth + 1)
                   for v in range(config.visual_depth, max_depth + 1)]
    else:
        options = [replace(config, text_depth=t) for t in range(1, max_depth + 1)]
    return min(options, key=lambda o: (abs(count_parameters(kind, o) - target), o.text_depth))
