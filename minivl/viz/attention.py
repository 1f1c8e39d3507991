"""What a vision transformer looks at: per-head [CLS] attention maps, attention
rollout, and the similarity of its learned position embeddings (lecture S01;
the same pictures work for the CLIP image tower, S14).

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
Transformers"): the residual connection carries each token past every
attention layer, so the layer's effective mixing is ``0.5 A + 0.5 I``. Average
the heads, add the identity, renormalise the rows, and multiply the layers:

    R = A_L' ... A_2' A_1',   A_l' = rownorm(mean_heads(A_l) + I)

Row 0 of ``R`` says how much of each input token flowed into the final [CLS].
Raw attention of the last layer alone shows only the last mixing step.

The functions return ``matplotlib.figure.Figure`` objects built without pyplot,
as ``minivl/viz/images.py`` does (Agg-safe, no open-figure leaks).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from minivl import nn
from minivl.models.vision import preprocess
from minivl.tensor import Tensor, no_grad


def attention_weights(model, images) -> list[np.ndarray]:
    """Each block's attention ``(B, H, 1+N, 1+N)`` for a batch of images, in eval mode.

    ``model`` is a ViT or a bare VisionEncoder (e.g. ``clip.vision_model``);
    ``images`` are uint8 ``(B, H, W[, C])`` (normalised with ``preprocess``'s
    defaults) or an already preprocessed float Tensor ``(B, C, H, W)``. The
    weights are read from an ``nn.record`` of the encoder's forward pass.
    """
    encoder = getattr(model, "encoder", model)
    x = images if isinstance(images, Tensor) else preprocess(images)
    was_training = encoder.training
    encoder.eval()
    try:
        with no_grad(), nn.record(encoder) as rec:
            encoder(x)
    finally:
        encoder.train(was_training)
    return [w.numpy() for w in rec.weights]


def cls_attention(weights: np.ndarray, grid: int) -> np.ndarray:
    """One layer's attention ``(B, H, 1+N, 1+N)`` -> [CLS]-to-patch maps ``(B, H, grid, grid)``."""
    weights = np.asarray(weights)
    B, H, T, _ = weights.shape
    if T != 1 + grid * grid:
        raise ValueError(f"attention over {T} tokens does not match 1 + {grid}x{grid} patches")
    return weights[:, :, 0, 1:].reshape(B, H, grid, grid)


def attention_rollout(weights: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema's rollout of per-layer attention ``[(B, H, T, T)] * L`` -> ``(B, T, T)``.

    Every row of the result sums to 1 (each factor is row-stochastic).
    """
    if len(weights) == 0:
        raise ValueError("attention_rollout needs the attention of at least one layer")
    B, _, T, _ = np.shape(weights[0])
    rollout = np.broadcast_to(np.eye(T), (B, T, T))  # (B, T, T)
    for layer in weights:
        a = np.asarray(layer, dtype=np.float64).mean(axis=1) + np.eye(T)  # (B, T, T): heads fused, residual
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = a @ rollout  # the later layer mixes what the earlier ones produced
    return rollout


def rollout_map(weights: list[np.ndarray], grid: int) -> np.ndarray:
    """How much each patch flowed into the final [CLS]: ``(B, grid, grid)``, summing to <= 1."""
    r = attention_rollout(weights)  # (B, 1+N, 1+N)
    return r[:, 0, 1:].reshape(len(r), grid, grid)


def position_similarity(pos_embed, grid: int) -> np.ndarray:
    """Cosine similarity of each patch's position embedding with every other's.

    ``pos_embed (1, 1+N, D)``, a NumPy array ([CLS] first, as in VisionEncoder:
    pass ``encoder.pos_embed.numpy()``) -> ``(grid, grid, grid, grid)``: entry
    ``[i, j]`` is the map of patch (i, j) against all patches (ViT paper, Fig. 7
    centre).
    """
    p = np.asarray(pos_embed, dtype=np.float64)[0, 1:]  # (N, D)
    if len(p) != grid * grid:
        raise ValueError(f"{len(p)} patch positions do not form a {grid}x{grid} grid")
    p = p / np.linalg.norm(p, axis=-1, keepdims=True)
    return (p @ p.T).reshape(grid, grid, grid, grid)


# --------------------------------------------------------------------------- figures


def _show(ax, image, heat=None, alpha=0.6):
    """Draw ``image`` and, over it, a coarse ``heat`` map stretched to the image's extent."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    h, w = image.shape[:2]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    if heat is not None:
        ax.imshow(heat, cmap="inferno", alpha=alpha, interpolation="nearest",
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_axis_off()


def attention_heads_figure(model, image, title: str | None = None, panel_size: float = 1.3) -> Figure:
    """Every layer's and head's [CLS]-to-patch attention for one image.

    Rows are layers (first at the top), columns the image then each head.
    """
    weights = attention_weights(model, np.asarray(image)[None])
    grid = getattr(model, "encoder", model).grid
    depth, heads = len(weights), weights[0].shape[1]
    fig = Figure(figsize=((heads + 1) * panel_size, depth * panel_size))
    axes = fig.subplots(depth, heads + 1, squeeze=False)
    for layer, w in enumerate(weights):
        maps = cls_attention(w, grid)[0]  # (H, grid, grid)
        _show(axes[layer, 0], image)
        axes[layer, 0].set_title(f"layer {layer + 1}", fontsize=7)
        for h in range(heads):
            _show(axes[layer, h + 1], image, maps[h])
            if layer == 0:
                axes[layer, h + 1].set_title(f"head {h + 1}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def attention_rollout_figure(model, images, captions=None, panel_size: float = 1.4) -> Figure:
    """Images (top row) and their attention rollout to [CLS] overlaid (bottom row)."""
    images = np.asarray(images)
    grid = getattr(model, "encoder", model).grid
    maps = rollout_map(attention_weights(model, images), grid)  # (B, grid, grid)
    n = len(images)
    fig = Figure(figsize=(n * panel_size, 2 * panel_size + 0.3))
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i])
        _show(axes[1, i], images[i], maps[i] / maps[i].max())
        if captions is not None:
            axes[0, i].set_title(str(captions[i]), fontsize=7)
    axes[1, 0].text(-0.1, 0.5, "rollout", transform=axes[1, 0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return fig


def position_similarity_figure(encoder, panel_size: float = 0.6) -> Figure:
    """A grid of grids: panel (i, j) shows patch (i, j)'s position-embedding similarity to all."""
    encoder = getattr(encoder, "encoder", encoder)
    g = encoder.grid
    sim = position_similarity(encoder.pos_embed.numpy(), g)  # (g, g, g, g)
    fig = Figure(figsize=(g * panel_size + 0.8, g * panel_size))
    axes = fig.subplots(g, g, squeeze=False)
    for i in range(g):
        for j in range(g):
            im = axes[i, j].imshow(sim[i, j], cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
    fig.suptitle("position embedding similarity (row, column of the patch)", fontsize=8)
    return fig
