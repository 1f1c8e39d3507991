"""The Numba CPU kernels: the reference math of ``kernels/reference.py``, compiled.

One file per op, each function with the signature and semantics of its
namesake in ``reference.py`` (which the tests in ``tests/kernels/`` check):

* ``matmul.py``     -- blocked, register-tiled GEMM (and the naive v1 for contrast); the
  backend calls OpenBLAS for GEMMs by default (``matmul_backend``: it is ~2x faster on
  the models' small-K shapes)
* ``softmax.py``    -- softmax / log-softmax, forward and backward
* ``layer_norm.py`` -- layer norm forward and backward
* ``gelu.py``       -- GELU, erf and tanh forms
* ``bias_gelu.py``  -- GELU(x + bias) in one pass, dbias summed in the backward's sweep
* ``attention_rows.py`` -- attention for short rows in the (B, N, H, D) layout, no copies
* ``attention.py``  -- FlashAttention-style fused attention, O(N) memory
* ``attention_ladder.py`` -- attention as numbered rungs: naive, online softmax, tiled, backward
* ``vmath.py``      -- an exp that LLVM can vectorise, and the fastmath flags
* ``_parallel.py``  -- every parallel kernel compiled twice; calls too small to share among
  threads (or made at one thread) run the serial build and skip waking Numba's workers

``KERNELS`` lists the ops this package exports; ``minivl.backend`` builds the
numba ``Backend`` from it once, and an op missing here falls back to the
reference. Every kernel is ``@njit(cache=True)``: the first process
compiles (seconds), later ones load machine code from ``__pycache__``.
Numba checks only the timestamp of the file that defines a kernel, so after
editing ``vmath.py`` or ``matmul.gemm_tile`` delete ``kernels/numba/__pycache__``.
"""

from __future__ import annotations

import numba as _numba

from minivl.threads import choose_numba_layer

# before any parallel kernel starts Numba's threads (as many as cores unless someone
# called minivl.threads.limit_threads first): workers that sleep, if more than one
choose_numba_layer(_numba.config.NUMBA_NUM_THREADS)

# modules only: importing the functions here would shadow ``matmul.py`` with
# the function ``matmul``
from . import attention, bias_gelu, gelu, layer_norm, matmul, softmax  # noqa: E402

KERNELS = {
    "matmul": matmul.matmul_backend,  # BLAS unless MINIVL_NUMBA_GEMM=own
    "softmax_forward": softmax.softmax_forward,
    "softmax_backward": softmax.softmax_backward,
    "log_softmax_forward": softmax.log_softmax_forward,
    "log_softmax_backward": softmax.log_softmax_backward,
    "layer_norm_forward": layer_norm.layer_norm_forward,
    "layer_norm_backward": layer_norm.layer_norm_backward,
    "gelu_forward": gelu.gelu_forward,
    "gelu_backward": gelu.gelu_backward,
    "bias_gelu_forward": bias_gelu.bias_gelu_forward,
    "bias_gelu_backward": bias_gelu.bias_gelu_backward,
    "attention_forward": attention.attention_forward,
    "attention_backward": attention.attention_backward,
}

__all__ = ["KERNELS"]
