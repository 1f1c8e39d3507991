"""The basic layers: Linear, Embedding, LayerNorm, Dropout, Conv2d and the
containers Sequential and ModuleList."""

from __future__ import annotations

from minivl import functional as F
from minivl.nn import init
from minivl.nn.module import Module, Parameter


class Linear(Module):
    """``y = x @ W.T + b`` with ``W (out_features, in_features)``."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.uniform_fan_in((out_features, in_features), in_features))
        self.bias = Parameter(init.uniform_fan_in((out_features,), in_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``dim``."""

    def __init__(self, num_embeddings, dim, std=0.02):
        super().__init__()
        self.num_embeddings, self.dim = num_embeddings, dim
        self.weight = Parameter(init.normal((num_embeddings, dim), std))

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.dim}"


class LayerNorm(Module):
    """Layer normalisation over the last axis, with a learned scale and shift."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(init.ones((dim,)))
        self.bias = Parameter(init.zeros((dim,)))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class Dropout(Module):
    """Zero activations with probability ``p`` while training; identity in eval()."""

    def __init__(self, p=0.1):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Conv2d(Module):
    """2-D convolution over ``(B, C, H, W)`` (ViT's patch embedding is one, S02)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        fan_in = in_channels * k[0] * k[1]
        self.stride, self.padding, self.kernel_size = stride, padding, k
        self.weight = Parameter(init.uniform_fan_in((out_channels, in_channels, *k), fan_in))
        self.bias = Parameter(init.uniform_fan_in((out_channels,), fan_in)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        o, c = self.weight.shape[:2]
        return f"{c}, {o}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Sequential(Module):
    """Apply modules one after another."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered (``blocks.0.…``)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        setattr(self, str(len(self._modules)), m)
        return self

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]


class Identity(Module):
    def forward(self, x):
        return x
