"""minivl: the vision-and-language transformers of the lecture, from scratch in NumPy.

    import minivl as mv
    from minivl import nn, optim, functional as F

    x = mv.tensor(array, requires_grad=True)
    y = F.softmax(x, axis=-1); y.sum().backward(); x.grad

See README.md for a tour, ``lectures/`` for the slide-by-slide notes.

The names below are loaded on first use (PEP 562 ``__getattr__``), so that
``import minivl.kernels.reference`` -- which runs this file first -- stays the
NumPy math alone, without the autograd engine, the layers and the optimizers.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> (module, attribute in it; None for the module itself)
_EXPORTS = {
    "backend": ("minivl.backend", None),
    "functional": ("minivl.functional", None),
    "nn": ("minivl.nn", None),
    "optim": ("minivl.optim", None),
    "testing": ("minivl.testing", None),
    "use": ("minivl.backend", "use"),
    "load": ("minivl.io", "load"),
    "save": ("minivl.io", "save"),
    "manual_seed": ("minivl.random", "manual_seed"),
    "Function": ("minivl.tensor", "Function"),
    "Tensor": ("minivl.tensor", "Tensor"),
    "is_grad_enabled": ("minivl.tensor", "is_grad_enabled"),
    "no_grad": ("minivl.tensor", "no_grad"),
    "tensor": ("minivl.tensor", "tensor"),
    "to_device": ("minivl.device", "to_device"),
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name):
    if name.startswith("__"):  # dunder lookups (``__path__`` probes, copy, pickle) are not ours
        raise AttributeError(f"module 'minivl' has no attribute {name!r}")
    # any other submodule too, as an eager ``import minivl`` used to provide: ``minivl.io``, ...
    module_name, attribute = _EXPORTS.get(name, (f"{__name__}.{name}", None))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise AttributeError(f"module 'minivl' has no attribute {name!r}") from None
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """This package, except that importing the submodule ``minivl.tensor`` does not
    rebind ``minivl.tensor``: that public name is the function ``tensor()``."""

    def __setattr__(self, name, value):
        if name == "tensor" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
