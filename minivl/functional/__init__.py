"""Differentiable operations, ``import minivl.functional as F``.

Every function takes and returns ``minivl.Tensor``s. Axis arguments are named
``axis`` (NumPy's convention). One idea per file:

* ``elementwise`` -- arithmetic, exp / log / sqrt, where, astype
* ``activations`` -- tanh, sigmoid, relu, gelu, quick_gelu, bias_gelu (fused bias + GELU)
* ``reduce``      -- sum, mean, max, var
* ``shape``       -- reshape, transpose, indexing, gather, concat, embedding
* ``linear``      -- matmul, linear
* ``softmax``     -- softmax, log_softmax, logsumexp, gumbel_softmax
* ``normalization`` -- layer_norm, l2_normalize, dropout
* ``losses``      -- cross_entropy, binary_cross_entropy_with_logits, kl_div
* ``attention``   -- scaled_dot_product_attention (composed and fused paths)
* ``conv``        -- conv2d, conv_transpose2d, upsample_nearest, pooling
"""

from minivl.functional.activations import bias_gelu, gelu, quick_gelu, relu, sigmoid, tanh
from minivl.functional.attention import scaled_dot_product_attention
from minivl.functional.conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d, upsample_nearest
from minivl.functional.elementwise import (
    add,
    astype,
    div,
    exp,
    log,
    masked_fill,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    where,
)
from minivl.functional.linear import linear, matmul
from minivl.functional.losses import binary_cross_entropy_with_logits, cross_entropy, kl_div
from minivl.functional.normalization import dropout, l2_normalize, layer_norm
from minivl.functional.reduce import max, mean, sum, var
from minivl.functional.shape import (
    concat,
    embedding,
    expand,
    gather,
    getitem,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    transpose,
    unsqueeze,
)
from minivl.functional.softmax import gumbel_softmax, log_softmax, logsumexp, softmax

__all__ = [
    "add", "astype", "avg_pool2d", "binary_cross_entropy_with_logits", "concat", "conv2d",
    "conv_transpose2d", "cross_entropy", "div", "dropout", "embedding", "exp", "expand", "gather",
    "bias_gelu", "gelu", "getitem", "gumbel_softmax", "kl_div", "l2_normalize", "layer_norm", "linear", "log",
    "log_softmax", "logsumexp", "masked_fill", "matmul", "max", "max_pool2d", "mean", "mul", "neg",
    "permute", "pow", "quick_gelu", "relu", "reshape", "scaled_dot_product_attention", "sigmoid",
    "softmax", "split", "sqrt", "squeeze", "stack", "sub", "sum", "swapaxes", "tanh", "transpose",
    "unsqueeze", "upsample_nearest", "var", "where",
]
