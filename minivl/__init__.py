"""minivl: the vision-and-language transformers of the lecture, from scratch in NumPy.

    import minivl as mv
    from minivl import nn, optim, functional as F

    x = mv.tensor(array, requires_grad=True)
    y = F.softmax(x, axis=-1); y.sum().backward(); x.grad

See README.md for a tour, ``lectures/`` for the slide-by-slide notes.
"""

__version__ = "0.1.0"

from minivl import backend, functional, nn, optim, testing  # noqa: E402
from minivl.backend import use  # noqa: E402
from minivl.io import load, save  # noqa: E402
from minivl.random import manual_seed  # noqa: E402
from minivl.tensor import Function, Tensor, is_grad_enabled, no_grad, tensor  # noqa: E402

__all__ = [
    "Function", "Tensor", "backend", "functional", "is_grad_enabled", "load", "manual_seed", "nn",
    "no_grad", "optim", "save", "tensor", "testing", "use", "__version__",
]
