"""The autograd engine: ``Tensor``, ``Function`` and reverse-mode ``backward``.

A ``Tensor`` wraps an array (NumPy, or CuPy on a GPU) and remembers the
``Function`` that made it. ``backward()`` walks that graph from the output to
the leaves in reverse topological order -- iteratively, so a 10,000-node chain
is fine -- and each ``Function.backward`` turns the gradient of its output into
gradients of its inputs (the chain rule, one node at a time). This is
micrograd's idea with arrays in place of scalars.

Dtypes (the rule students meet first):
* ``mv.tensor(array)`` keeps the dtype of a floating-point array (float64 stays
  float64, as gradient checks need); integer and bool arrays keep theirs (they
  are indices and masks, never differentiated);
* Python numbers and lists of them become float32, as do parameters;
* mixing float32 and float64 in one op promotes to float64 (NumPy's rules);
  a Python scalar operand takes the dtype of the tensor it meets.

Why one file of ~380 lines: the engine is read as one story (graph, backward,
the operators that build the graph), as micrograd's ``Value`` is; most of the
length is ``Tensor``'s one-line operator methods, each a call into
``minivl.functional``.
"""

from __future__ import annotations

import contextlib

import numpy as np

_GRAD_ENABLED = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (evaluation, optimizer steps)."""
    global _GRAD_ENABLED
    previous, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


def array_module(a):
    """``numpy``, or ``cupy`` when ``a`` lives on a GPU."""
    if isinstance(a, np.ndarray) or not hasattr(a, "__cuda_array_interface__"):
        return np
    import cupy  # only reached with CuPy arrays, so CuPy is installed

    return cupy


def _as_array(data, dtype=None):
    """Turn user input into an array; Python numbers and lists default to float32."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (np.ndarray, np.generic)) or hasattr(data, "__cuda_array_interface__"):
        arr = data if isinstance(data, np.ndarray) or not isinstance(data, np.generic) else np.asarray(data)
        return arr if dtype is None else arr.astype(dtype, copy=False)
    arr = np.asarray(data)
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    return arr.astype(np.float32) if arr.dtype.kind in "fiu" else arr


class Context:
    """What one node of the graph keeps for its backward pass."""

    __slots__ = ("fn", "parents", "saved", "needs_input_grad", "__dict__")

    def __init__(self, fn, parents):
        self.fn = fn
        self.parents = parents
        self.needs_input_grad = tuple(p.requires_grad for p in parents)
        self.saved = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Function:
    """One differentiable operation.

    Subclasses write two static methods on raw arrays::

        forward(ctx, *arrays, **options) -> array
        backward(ctx, grad) -> one gradient per array input (None where not needed)

    and call it as ``MyFunction.apply(*tensors, **options)``.
    """

    @staticmethod
    def forward(ctx, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        tensors = tuple(x if isinstance(x, Tensor) else Tensor(x) for x in inputs)
        if _GPU_SEEN:  # once anything moved to a GPU: host constants meet device arrays there
            tensors = _on_one_device(tensors)
        ctx = Context(cls, tensors)
        out = cls.forward(ctx, *(t.data for t in tensors), **options)
        if _GRAD_ENABLED and any(ctx.needs_input_grad):
            return Tensor(out, requires_grad=True, _ctx=ctx)
        return Tensor(out)


# Set by minivl.device (mark_gpu_seen) the first time an array moves to a GPU; until
# then Function.apply pays nothing for the device check below.
_GPU_SEEN = False


def mark_gpu_seen() -> None:
    """From now on ``Function.apply`` copies host constants next to device inputs."""
    global _GPU_SEEN
    _GPU_SEEN = True


def _on_one_device(tensors):
    """``tensors`` with host constants (images, masks, scalars: no gradient) copied to the
    GPU when another input lives there; a host tensor that needs a gradient is an error."""
    gpu = [t for t in tensors if not isinstance(t.data, np.ndarray)]
    if not gpu or len(gpu) == len(tensors):
        return tensors
    xp = array_module(gpu[0].data)
    out = []
    for t in tensors:
        if isinstance(t.data, np.ndarray):
            if t.requires_grad:
                raise ValueError(f"a tensor of shape {t.shape} that needs a gradient is on the CPU while "
                                 "another input of the same op is on the GPU: move the model with .to('cuda')")
            t = Tensor(xp.asarray(t.data))
        out.append(t)
    return tuple(out)


class Tensor:
    """An array plus the bookkeeping reverse-mode autodiff needs."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retain", "__weakref__")
    __array_priority__ = 1000  # so ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None, _ctx=None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = _ctx
        self._retain = False

    # ------------------------------------------------------------------ basics
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self._ctx is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(np.asarray(self.numpy()), precision=4, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{grad})"

    def numpy(self):
        """The data as a NumPy array (copied off the GPU if needed)."""
        return self.data.get() if hasattr(self.data, "get") and not isinstance(self.data, np.ndarray) else self.data

    def item(self):
        return self.data.item()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (for plots)."""
        self._retain = True
        return self

    def astype(self, dtype):
        from minivl import functional as F

        return F.astype(self, dtype)

    def zero_grad(self):
        self.grad = None

    # ------------------------------------------------------------------ backward
    def backward(self, grad=None, on_leaf_grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the gradient flowing into ``self``; it may be left out only
        when ``self`` holds a single element (a loss). ``on_leaf_grad(leaf)`` is
        called as soon as a leaf's gradient is complete, while the rest of the
        graph is still being walked (data parallel starts its all-reduce there).
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(was it computed inside no_grad(), or from constants only?)")
        xp = array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a single-element tensor, got shape "
                    f"{self.shape}; pass grad= of that shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape}, tensor has shape {self.shape}")

        grads = {id(self): grad}
        for node in _topological_order(self):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None or node._retain:
                node.grad = g if node.grad is None else node.grad + g
            if node._ctx is None and on_leaf_grad is not None:
                on_leaf_grad(node)  # every user of a leaf comes before it in the order
            ctx = node._ctx
            if ctx is None:
                continue
            in_grads = ctx.fn.backward(ctx, g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for parent, pg in zip(ctx.parents, in_grads):
                if pg is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    # ------------------------------------------------------------------ operators
    def __add__(self, o):
        return F.add(self, o)

    def __radd__(self, o):
        return F.add(o, self)

    def __sub__(self, o):
        return F.sub(self, o)

    def __rsub__(self, o):
        return F.sub(o, self)

    def __mul__(self, o):
        return F.mul(self, o)

    def __rmul__(self, o):
        return F.mul(o, self)

    def __truediv__(self, o):
        return F.div(self, o)

    def __rtruediv__(self, o):
        return F.div(o, self)

    def __neg__(self):
        return F.neg(self)

    def __pow__(self, p):
        return F.pow(self, p)

    def __matmul__(self, o):
        return F.matmul(self, o)

    def __rmatmul__(self, o):
        return F.matmul(o, self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    # comparisons give plain boolean arrays: they are masks, not differentiable
    def __lt__(self, o):
        return self.data < _raw(o)

    def __le__(self, o):
        return self.data <= _raw(o)

    def __gt__(self, o):
        return self.data > _raw(o)

    def __ge__(self, o):
        return self.data >= _raw(o)

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ methods
    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return F.max(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, keepdims=False):
        return F.var(self, axis=axis, keepdims=keepdims)

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def sqrt(self):
        return F.sqrt(self)

    def tanh(self):
        return F.tanh(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def relu(self):
        return F.relu(self)

    def softmax(self, axis=-1):
        return F.softmax(self, axis=axis)

    def log_softmax(self, axis=-1):
        return F.log_softmax(self, axis=axis)

    def reshape(self, *shape):
        return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    def permute(self, *axes):
        return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)

    def swapaxes(self, a, b):
        return F.swapaxes(self, a, b)

    @property
    def T(self):
        return F.transpose(self, None)

    def expand(self, *shape):
        return F.expand(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def squeeze(self, axis=None):
        return F.squeeze(self, axis)

    def unsqueeze(self, axis):
        return F.unsqueeze(self, axis)

    def flatten(self, start_axis=0):
        return F.reshape(self, self.shape[:start_axis] + (-1,))


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _topological_order(root):
    """Nodes that need a gradient, each after every node that uses it.

    A depth-first post-order, written with an explicit stack instead of
    recursion so that very deep graphs do not hit Python's recursion limit.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            # Parents pushed last are explored first and so come last in the order;
            # pushing them in reverse puts a layer's weights (its later inputs) right
            # after the layer's backward: their gradients are ready early, which
            # lets data parallel send them while backward goes on.
            for p in reversed(node._ctx.parents):
                if p.requires_grad and id(p) not in visited:
                    stack.append((p, False))
    order.reverse()
    return order


def tensor(data, requires_grad=False, dtype=None):
    """Make a ``Tensor`` (see the module docstring for the dtype rules)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


from minivl import functional as F  # noqa: E402  (functional needs Tensor first)
