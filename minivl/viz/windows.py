"""Swin's windows drawn on an image (lecture S01, ``minivl/nn/swin.py``).

``swin_windows_figure`` shows three panels: the regular M x M-patch windows;
the shifted windows (borders moved by ``shift`` patches), each cell coloured
by the region label ``shifted_window_mask`` gives it after the cyclic roll,
so a window made of several colours is one whose pieces came from opposite
sides of the image; and, for that last window, which tokens may attend to
which.
"""

from __future__ import annotations

import numpy as np

from minivl.nn.swin import shifted_window_mask


def _grid_lines(ax, size, step, offset=0, **style):
    for k in range(-1, size // step + 2):
        v = offset + k * step - 0.5
        if -0.5 <= v <= size - 0.5:
            ax.axvline(v, **style)
            ax.axhline(v, **style)


def swin_windows_figure(image, patch_size, window_size, shift=None):
    """``image`` (H, W, 3) uint8, square; ``window_size`` and ``shift`` in patches
    (default shift: half a window, as Swin)."""
    import matplotlib.pyplot as plt

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"swin_windows_figure expects a square image (H, W, 3), got shape {image.shape}")
    size = image.shape[0]
    if size % patch_size:
        raise ValueError(f"image size {size} is not divisible by patch_size {patch_size}")
    grid = size // patch_size
    M = window_size
    shift = M // 2 if shift is None else shift
    window_px = M * patch_size
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))

    axes[0].imshow(image)
    _grid_lines(axes[0], size, patch_size, color="white", lw=0.4, alpha=0.5)
    _grid_lines(axes[0], size, window_px, color="red", lw=2)
    axes[0].set_title(f"W-MSA: {grid // M}x{grid // M} windows of {M}x{M} patches")

    # The region labels after the roll, mapped back to where each patch sits in the image.
    label = np.zeros((grid, grid), int)
    if shift:
        cuts = (slice(0, grid - M), slice(grid - M, grid - shift), slice(grid - shift, grid))
        for r, (sh, sw) in enumerate((sh, sw) for sh in cuts for sw in cuts):
            label[sh, sw] = r
    label_in_image = np.roll(label, (shift, shift), axis=(0, 1))  # rolled frame -> image frame
    overlay = np.kron(label_in_image, np.ones((patch_size, patch_size)))
    axes[1].imshow(image)
    axes[1].imshow(overlay, cmap="tab10", alpha=0.35, vmin=0, vmax=9)
    _grid_lines(axes[1], size, window_px, offset=-shift * patch_size, color="red", lw=2)
    axes[1].set_title(f"SW-MSA: windows shifted by {shift} patches\n(colours: pieces a window joins by the roll)")

    mask = shifted_window_mask(grid, grid, M, shift)[-1]  # the bottom-right window: four pieces
    axes[2].imshow(mask, cmap="Greys_r")
    axes[2].set_title("bottom-right shifted window:\nmay token i (row) attend to token j?")
    axes[2].set_xlabel("key token j")
    axes[2].set_ylabel("query token i")
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
