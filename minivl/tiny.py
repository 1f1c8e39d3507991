"""Tiny instances of every lecture model, each with a fixed batch and its training loss.

The backend tests train these for a few steps on two backends and compare the
losses: the CUDA kernels under the emulator on the CPU
(``tests/test_backend_cuda_emulated.py``) and on a real GPU
(``tests/test_gpu_train.py``). Keeping them here means both tests, and anyone
checking a new backend, train the same models on the same data::

    case = minivl.tiny.case("vilbert")
    model = case.make()
    loss = case.loss(model, *case.batch)

``batch`` holds host (NumPy) arrays; move it with ``minivl.to_device`` first when
training on the GPU. Sizes are the smallest that still use every part of a
model (two layers where a model alternates something, padding masks where a
model takes them), so that the emulator, which runs each CUDA thread as a
fiber, gets through a few steps in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import minivl.functional as F

NAMES = ("gpt", "bert", "vit", "clip", "vilbert", "dvae", "dalle", "llava")


@dataclass
class Case:
    """``make()`` builds the model (seeded by the caller); ``loss(model, *batch)`` is its training loss."""

    make: Callable
    batch: tuple
    loss: Callable


def case(name: str) -> Case:
    """The tiny model called ``name`` (one of ``NAMES``), its batch and its loss."""
    if name not in NAMES:
        raise ValueError(f"name must be one of {NAMES}, got {name!r}")
    return globals()[f"_{name}"](np.random.default_rng(0))


def _gpt(rng):
    from minivl.models.gpt import GPT

    return Case(lambda: GPT(vocab_size=50, max_len=16, dim=32, depth=2, num_heads=2),
                (rng.integers(0, 50, (4, 16)),), lambda m, ids: m.loss(ids))


def _bert(rng):
    from minivl.models.bert import BERT, mlm_loss

    ids = rng.integers(5, 50, (4, 16))
    labels = np.where(rng.random((4, 16)) < 0.3, ids, -100)
    labels[0, 0] = ids[0, 0]  # at least one masked position
    mask = np.ones((4, 16), dtype=bool)
    mask[1, 12:] = False  # one padded caption
    return Case(lambda: BERT(vocab_size=50, max_len=16, dim=32, depth=2, num_heads=2, dropout=0.0),
                (ids, labels, mask),
                lambda m, ids, labels, mask: mlm_loss(m.mlm_logits(ids, key_padding_mask=mask), labels))


def _vit(rng):
    from minivl.models.vit import ViT

    images = rng.standard_normal((8, 1, 16, 16)).astype(np.float32)
    return Case(lambda: ViT(num_classes=4, image_size=16, patch_size=4, in_channels=1, dim=32, depth=2,
                            num_heads=2),
                (images, rng.integers(0, 4, 8)), lambda m, x, y: F.cross_entropy(m(x), y))


def _clip(rng):
    from minivl.models.clip import CLIP

    images = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    ids = rng.integers(1, 49, (4, 8))
    ends = np.array([3, 7, 5, 2])
    ids[np.arange(4), ends] = 49  # the last id plays end-of-text
    mask = np.arange(8)[None] <= ends[:, None]
    ids[~mask] = 0
    return Case(lambda: CLIP(embed_dim=16, image_size=16, patch_size=8, vision_dim=32, vision_depth=1,
                             vision_heads=2, vocab_size=50, context_length=8, text_dim=32, text_depth=1,
                             text_heads=2),
                (images, ids, mask), lambda m, images, ids, mask: m.loss(images, ids, mask))


def vilbert_config():
    """The tiny ViLBERT: vocabulary 40, region features of 10, two co-attention layers, 6 region classes
    (``tests/models/test_vilbert.py`` tests the model at this size too)."""
    from minivl.models.vilbert import ViLBERTConfig

    return ViLBERTConfig(vocab_size=40, max_len=12, text_dim=16, text_depth=2, text_heads=2, text_mlp_dim=32,
                         feat_dim=10, visual_dim=12, visual_depth=2, visual_heads=2, visual_mlp_dim=24,
                         co_dim=8, co_heads=2, co_attention_at=((1, 0), (2, 1)), pool_dim=8,
                         n_region_classes=6, dropout=0.0)


def _vilbert(rng):
    """All three pretraining terms (S07-S09) through two co-attention layers."""
    from minivl.models.vilbert import ViLBERT
    from minivl.recipes.vilbert import masked_region_loss

    config = vilbert_config()
    V, FEAT, B, T, R = config.vocab_size, config.feat_dim, 3, 6, 4
    ids = rng.integers(0, V, (B, T))
    text_mask = np.ones((B, T), bool)
    text_mask[0, 4:] = False
    feats = rng.standard_normal((B, 1 + R, FEAT)).astype(np.float32)
    locs = rng.random((B, 1 + R, 5)).astype(np.float32)
    region_mask = np.ones((B, 1 + R), bool)
    region_mask[1, 3:] = False
    labels = np.where(rng.random((B, T)) < 0.4, ids, -100)
    labels[0, 0] = ids[0, 0]
    det_probs = rng.dirichlet(np.ones(6), (B, 1 + R)).astype(np.float32)
    chosen = rng.random((B, 1 + R)) < 0.5
    chosen[0, 1] = True
    aligned = np.array([0, 1, 1])

    def loss(m, ids, text_mask, feats, locs, region_mask, labels, det_probs, chosen, aligned):
        s = m.encode(ids, text_mask, feats, locs, region_mask)
        return (F.cross_entropy(m.mlm_logits(s), labels, ignore_index=-100)
                + masked_region_loss(m.region_logits(s), det_probs, chosen)
                + F.cross_entropy(m.alignment_logits(s), aligned))

    return Case(lambda: ViLBERT(config), (ids, text_mask, feats, locs, region_mask, labels, det_probs,
                                          chosen, aligned), loss)


def _dvae(rng):
    """The dVAE's ELBO (S21-S23): conv encoder, Gumbel-softmax codes, conv decoder."""
    from minivl.models.dvae import DiscreteVAE

    images = rng.random((3, 3, 8, 8)).astype(np.float32)
    return Case(lambda: DiscreteVAE(image_size=8, vocab_size=7, widths=(4, 8), codebook_dim=6),
                (images,), lambda m, x: m.loss(x, tau=1.0, beta=0.1))


def _dalle(rng):
    """The prior over caption + image codes (S24-S26), with the sparse attention masks."""
    from minivl.models.dalle import DALLE

    config = dict(text_vocab=20, text_len=4, image_vocab=7, grid_h=2, grid_w=3, dim=16, depth=2, num_heads=2)
    model = DALLE(**config)
    ids = model.stream(model.pad_text([[1, 2], [3, 4, 5]]), rng.integers(0, 7, (2, 2, 3)))
    return Case(lambda: DALLE(**config, attention="sparse"), (ids,), lambda m, ids: m.loss(ids))


def _llava(rng):
    """LLaVA's answer loss (S29-S33): frozen patch features, the projector, the GPT."""
    from minivl.models.llava import LLaVA

    images = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    ids = rng.integers(4, 30, (2, 11))
    ids[:, 2:6] = 3  # 2 x 2 patches in the <image> positions
    labels = np.where(np.arange(11)[None] >= 6, ids, -100)
    return Case(lambda: LLaVA(image_size=16, patch_size=8, vision_dim=16, vision_depth=2, vision_heads=2,
                              vocab_size=30, max_len=24, dim=16, depth=2, num_heads=2, image_token_id=3),
                (images, ids, labels), lambda m, images, ids, labels: m.loss(m.image_features(images), ids, labels))
