"""Plots of a CLIP model (lecture S13-S16): the image-text similarity matrix,
zero-shot probabilities per image, both modalities in one 2-D picture, and
the training curves with the learned temperature.

Each function builds a ``matplotlib.figure.Figure`` (no pyplot), as
``images.py`` does: Agg-safe, no figures left open, displayed by notebooks.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure


def _show(ax, image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()


def similarity_heatmap(similarity, images=None, captions=None, title="cosine similarity") -> Figure:
    """The ``(n_images, n_texts)`` matrix of S15, images down the side, captions along the top.

    A trained CLIP puts its largest values on the diagonal (the true pairs).
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be a 2-D (images, texts) matrix, got shape {sim.shape}")
    n_img, n_txt = sim.shape
    if images is not None and len(images) != n_img:
        raise ValueError(f"{len(images)} images for a similarity matrix with {n_img} rows")
    if captions is not None and len(captions) != n_txt:
        raise ValueError(f"{len(captions)} captions for a similarity matrix with {n_txt} columns")
    cell = 0.55
    fig = Figure(figsize=(1.6 + cell * n_txt + 1.2, 1.0 + cell * n_img + (2.0 if captions else 0.3)))
    left = 0.9 / fig.get_figwidth() if images is not None else 0.08
    ax = fig.add_axes([left + 0.02, 0.05, 0.8 - left, 0.9 if not captions else 0.62])
    shown = ax.imshow(sim, cmap="viridis", aspect="auto")
    for i in range(n_img):
        for j in range(n_txt):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if sim[i, j] > sim.mean() else "white")
    ax.set_yticks([])
    ax.set_xticks(range(n_txt))
    if captions:
        ax.xaxis.tick_top()
        ax.set_xticklabels(["\n".join(textwrap.wrap(c, 18)) for c in captions], rotation=90, fontsize=7)
    else:
        ax.set_xticklabels([])
    if images is not None:  # a thumbnail beside each row
        height = ax.get_position().height / n_img
        for i, image in enumerate(images):
            bottom = ax.get_position().y1 - (i + 1) * height
            _show(fig.add_axes([0.01, bottom, left, height * 0.95]), image)
    fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02, label=title)
    return fig


def zero_shot_bars(images, probs, class_names, true_labels=None, top=5, ncols=4) -> Figure:
    """Each image beside a bar chart of its ``top`` most probable classes (slide S16).

    The bar of the true class (when ``true_labels`` is given) is green, the others grey.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(images) or probs.shape[1] != len(class_names):
        raise ValueError(f"probs must be (n_images, n_classes) = ({len(images)}, {len(class_names)}),"
                         f" got {probs.shape}")
    n = len(images)
    top = min(top, probs.shape[1])
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(ncols * 3.6, nrows * 1.5))
    grid = fig.add_gridspec(nrows, 2 * ncols, width_ratios=[1, 1.8] * ncols, wspace=0.1, hspace=0.35)
    for k in range(n):
        r, c = divmod(k, ncols)
        _show(fig.add_subplot(grid[r, 2 * c]), images[k])
        ax = fig.add_subplot(grid[r, 2 * c + 1])
        order = np.argsort(-probs[k])[:top][::-1]  # most likely on top
        colours = ["tab:green" if true_labels is not None and i == true_labels[k] else "tab:gray"
                   for i in order]
        ax.barh(range(top), probs[k, order], color=colours, alpha=0.6)
        for row, i in enumerate(order):  # the class names inside the panel, over their bars
            ax.text(0.02, row, f"{class_names[i]} {probs[k, i]:.0%}", va="center", fontsize=7)
        ax.set_yticks([])
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=6)
        best = order[-1]
        ax.set_title(f"{class_names[best]} ({probs[k, best]:.1%})", fontsize=8)
    return fig


def embedding_pca(image_emb, text_emb, image_labels=None, text_labels=None, label_names=None) -> Figure:
    """Both modalities projected on the first two principal components of their union.

    Images are dots, texts are crosses; a shared colour marks a shared label.
    CLIP's space is shared, but the two clouds keep a gap between them (the
    "modality gap", Liang et al. 2022): the loss only needs pairs to be
    *relatively* close.
    """
    img, txt = np.asarray(image_emb, np.float64), np.asarray(text_emb, np.float64)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"need (n, E) embeddings of one width, got {img.shape} and {txt.shape}")
    both = np.concatenate([img, txt])
    centred = both - both.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T  # (n_img + n_txt, 2)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    cmap = colormaps["tab20"]
    labels = np.concatenate([
        np.zeros(len(img), int) if image_labels is None else np.asarray(image_labels),
        np.ones(len(txt), int) if text_labels is None else np.asarray(text_labels),
    ])
    colours = cmap(labels % 20)
    ax.scatter(*xy[: len(img)].T, c=colours[: len(img)], marker="o", s=14, alpha=0.7, label="images")
    ax.scatter(*xy[len(img):].T, c=colours[len(img):], marker="x", s=40, linewidths=1.5, label="texts")
    if label_names is not None and text_labels is not None:
        for (x, y), lab in zip(xy[len(img):], text_labels):
            ax.annotate(label_names[lab], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.legend(fontsize=7)
    ax.set_title("images (o) and texts (x) in the shared space", fontsize=9)
    return fig


def training_curves(steps, loss, scale, evals=None, metric_keys=None) -> Figure:
    """The contrastive loss, the learned temperature exp(t), and evaluation metrics."""
    if len(steps) != len(loss) or len(scale) != len(loss):
        raise ValueError(f"steps ({len(steps)}), loss ({len(loss)}) and scale ({len(scale)}) "
                         "must have one entry per step")
    panels = 3 if evals else 2
    fig = Figure(figsize=(4 * panels, 3.2))
    axes = fig.subplots(1, panels)
    axes[0].plot(steps, loss, lw=1)
    axes[0].set_title("symmetric contrastive loss", fontsize=9)
    axes[0].set_xlabel("step")
    axes[1].plot(steps, scale, lw=1.5, color="tab:orange")
    axes[1].axhline(100, ls="--", color="gray", lw=1)
    axes[1].set_title("learned scale exp(t) (clipped at 100)", fontsize=9)
    axes[1].set_xlabel("step")
    if evals:
        keys = metric_keys or [k for k in evals[0] if k != "step"][:4]
        for key in keys:
            axes[2].plot([e["step"] for e in evals], [e[key] for e in evals], marker="o", label=key)
        axes[2].set_ylim(0, 1.02)
        axes[2].set_title("evaluation", fontsize=9)
        axes[2].set_xlabel("step")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig
