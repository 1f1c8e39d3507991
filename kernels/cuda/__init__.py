"""CUDA kernels for CuPy arrays: the ``.cu`` sources beside this file, compiled by NVRTC.

One source per kernel family, each with its Python wrapper of the same name
(``sgemm.py`` for ``matmul.cu``, so that ``matmul`` names the function):

* ``matmul.cu``        -- SGEMM as a numbered lesson, 1 (naive) .. 8 (double buffered);
* ``softmax.cu``       -- softmax / log-softmax, online max and sum, one block per row;
* ``layer_norm.cu``    -- layer norm, dgamma/dbeta by per-block partial sums;
* ``gelu.cu``          -- GELU, erf, tanh and sigmoid forms, and GELU(x + bias) fused;
* ``attention.cu``     -- fused fp32 attention, FlashAttention-2 forward and backward;
* ``attention_mma.cu`` -- fused fp16/bf16 attention forward on tensor cores (mma.sync).
* ``attention_ladder.cu`` -- attention rungs 1 (naive, N x N scores) and 2 (online softmax);
  ``attention_ladder.py`` numbers every attention kernel as one ladder, 1 .. 5.

Every wrapper has the signature and semantics of ``kernels/reference.py`` and
takes and returns CuPy arrays. Importing this package does not import CuPy;
``available()`` says whether the kernels can run here, and ``KERNELS`` lists
the ops ``minivl.backend`` builds the cuda ``Backend`` from. Without a GPU, ``emulate.on_cpu()`` runs the
same sources as host C++ on NumPy arrays (slowly: for checking, not training).
"""

from minivl.kernels.cuda.attention import attention_backward, attention_forward
from minivl.kernels.cuda.attention_ladder import attention_forward_naive, attention_forward_online
from minivl.kernels.cuda.attention_mma import attention_forward_mma
from minivl.kernels.cuda.gelu import bias_gelu_backward, bias_gelu_forward, gelu_backward, gelu_forward
from minivl.kernels.cuda.layer_norm import layer_norm_backward, layer_norm_forward
from minivl.kernels.cuda.loader import available
from minivl.kernels.cuda.sgemm import matmul
from minivl.kernels.cuda.softmax import (
    log_softmax_backward,
    log_softmax_forward,
    softmax_backward,
    softmax_forward,
)

KERNELS = {
    "matmul": matmul,
    "softmax_forward": softmax_forward,
    "softmax_backward": softmax_backward,
    "log_softmax_forward": log_softmax_forward,
    "log_softmax_backward": log_softmax_backward,
    "layer_norm_forward": layer_norm_forward,
    "layer_norm_backward": layer_norm_backward,
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "bias_gelu_forward": bias_gelu_forward,
    "bias_gelu_backward": bias_gelu_backward,
    "attention_forward": attention_forward,
    "attention_backward": attention_backward,
}

__all__ = ["KERNELS", "attention_forward_mma", "attention_forward_naive", "attention_forward_online", "available",
           *KERNELS]
