"""Where arrays live: ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy, on the GPU).

The kernel backend follows the arrays (``minivl.backend.for_array``: a CuPy
array is always served by the ``cuda`` kernels), so training on the GPU is
moving the model and each batch there::

    mv.use("cuda")                      # or MINIVL_BACKEND=cuda
    model.to("cuda")                    # parameters and buffers become CuPy arrays
    images, ids = mv.to_device((images, ids), "cuda")   # images move; ids stay NumPy
    loss = model.loss(images, ids); loss.backward(); opt.step()   # AdamW's state follows the parameters
    mv.save_checkpoint(model, path)     # state_dict() copies device arrays to the host

Integer ids, labels and boolean masks stay NumPy: every model checks them at
the door as NumPy arrays (``minivl/models/inputs.py``), and the ops that take
them (embedding, cross-entropy, gather, attention masks) move them, so
``to_device`` leaves them on the host and moves only floating-point arrays
(images, region features, targets). A host array under ``use("cuda")`` is
served by the CPU kernels (``minivl.backend.for_array``).

Under ``minivl.kernels.cuda.emulate.on_cpu()`` (no GPU: the ``.cu`` sources
run as host C++ on NumPy arrays) ``"cuda"`` arrays are NumPy arrays, so the
same code path runs in the CPU tests.
"""

from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "cuda")


def _check(device):
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")


def _emulated() -> bool:
    from minivl.kernels.cuda import emulate

    return emulate.active()


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, else ``"cpu"``."""
    from minivl.tensor import Tensor

    if isinstance(array, Tensor):
        array = array.data
    return "cuda" if hasattr(array, "__cuda_array_interface__") and not isinstance(array, np.ndarray) else "cpu"


def to_array(array, device):
    """One array on ``device``: a CuPy copy for ``"cuda"``, a NumPy copy for ``"cpu"``
    (the array itself when it is there already)."""
    _check(device)
    on_gpu = device_of(array) == "cuda"
    if device == "cpu":
        return array.get() if on_gpu else array
    if on_gpu or _emulated():
        return array
    from minivl.kernels.cuda.loader import available, cupy

    if not available():
        raise RuntimeError(
            "to_device('cuda'): no CUDA device here (CuPy missing or no GPU); use 'cpu', or run "
            "inside minivl.kernels.cuda.emulate.on_cpu() to emulate the CUDA kernels on the CPU")
    # (not ``from minivl import tensor``: that name is the package's ``minivl.tensor()`` function)
    from minivl.tensor import mark_gpu_seen

    mark_gpu_seen()  # from now on Function.apply moves host constants next to device inputs
    return cupy().asarray(array)


def to_device(obj, device):
    """``obj`` with every array (NumPy/CuPy arrays, Tensors, and the lists, tuples and
    dicts holding them) on ``device``; other values pass through. Tensors are moved in place.
    Only floating-point arrays move to the GPU: integer, boolean and string NumPy arrays
    (ids, labels, masks, answers) stay on the host (see above)."""
    from minivl.tensor import Tensor

    if isinstance(obj, Tensor):
        obj.data = to_array(obj.data, device)
        if obj.grad is not None:
            obj.grad = to_array(obj.grad, device)
        return obj
    if isinstance(obj, np.ndarray) and device == "cuda" and obj.dtype.kind not in "fc":
        return obj  # ids, labels, masks, strings: NumPy at the models' door (see the module docstring)
    if isinstance(obj, np.ndarray) or hasattr(obj, "__cuda_array_interface__"):
        return to_array(obj, device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(to_device(x, device) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def like(index, other):
    """``index`` (ids, labels, a mask) in the array module of ``other`` (a no-op on the CPU)."""
    if device_of(other) == "cuda" and device_of(index) == "cpu":
        from minivl.tensor import array_module

        return array_module(other).asarray(index)
    return index


def asarray(x):
    """``x`` as an array where it lives: a CuPy array stays one (``np.asarray`` refuses
    it), anything else becomes a NumPy array."""
    return x if device_of(x) == "cuda" else np.asarray(x)
