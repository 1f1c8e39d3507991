"""The ViT exercise: cut an image batch into flattened patches (Dosovitskiy et al. 2021, eq. 1).

A ViT (lecture S01, and CLIP's image tower, S14) reads an image as a sequence
of P x P patches, in row-major order, each flattened and linearly projected.
minivl does it in ``minivl/models/vision.py::patchify``; the flattening order
(C, P, P) is the one that makes the linear projection equal a stride-P
convolution.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.exercises.draw import DTYPES, SEEDS, array, sizes

PATCHIFY_STUB = '''
def patchify(images, patch_size):
    """Cut images (B, C, H, W) into non-overlapping patch_size x patch_size patches.

    H and W are multiples of P = patch_size. Patches are numbered row by row
    (left to right, then top to bottom): N = (H / P) * (W / P). Each patch is
    flattened in (C, P, P) order: channel first, then row, then column.
    Returns (B, N, C * P * P), in the dtype of images.
    """
    raise NotImplementedError("patchify")
'''


def _patchify(images, patch_size, grid="rows", flat="cpp"):
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P)  # (B, C, gh, P, gw, P)
    order = {"rows": (0, 2, 4), "columns": (0, 4, 2)}[grid]
    inner = {"cpp": (1, 3, 5), "ppc": (3, 5, 1)}[flat]
    return x.transpose(*order, *inner).reshape(B, (H // P) * (W // P), C * P * P)


def _patchify_loop(images, patch_size):
    B, C, H, W = images.shape
    P = patch_size
    patches = [images[:, :, r:r + P, c:c + P].reshape(B, -1) for r in range(0, H, P) for c in range(0, W, P)]
    return np.stack(patches, axis=1)


@st.composite
def _images(draw):
    P = draw(sizes(1, 4))
    shape = (draw(sizes(1, 2)), draw(sizes(1, 3)), P * draw(sizes(1, 3)), P * draw(sizes(1, 3)))
    return {"images": array(shape, draw(DTYPES), 1.0, draw(SEEDS)), "patch_size": P}


PATCHIFY = Exercise(
    name="patchify", slide="S14", part="ex0_transformers", title="ViT patches",
    stub=PATCHIFY_STUB, reference=_patchify,
    solution="minivl/models/vision.py::patchify",
    inputs=_images(),
    mistakes=[
        Mistake("reshape without transpose", "a plain reshape of (B, C, H, W) does not cut squares: reshape to "
                "(B, C, H/P, P, W/P, P) and transpose to (B, H/P, W/P, C, P, P) first.",
                lambda x, P: x.reshape(x.shape[0], -1, x.shape[1] * P * P)),
        Mistake("patches column by column", "number the patches row by row: the patch-row index varies "
                "slowest.", lambda x, P: _patchify(x, P, grid="columns")),
        Mistake("channels last in each patch", "flatten each patch in (C, P, P) order, the order of a "
                "convolution's weight (D, C, P, P).", lambda x, P: _patchify(x, P, flat="ppc")),
    ],
)
PATCHIFY.alternative = _patchify_loop

EXERCISES = [PATCHIFY]
