"""Ops that move data around without arithmetic: reshape, transpose, indexing,
concatenation, and the embedding lookup. Their backward passes route the
gradient back to where each element came from.
"""

from __future__ import annotations

import numpy as np

from minivl.device import asarray, like
from minivl.functional._util import normalize_axis
from minivl.tensor import Function, Tensor, array_module


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(np.argsort(ctx.axes))


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return array_module(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        from minivl.functional._util import unbroadcast

        return unbroadcast(g, ctx.shape)


class GetItem(Function):
    """Basic and advanced indexing; the gradient is scattered back with add.at."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        out = xp.zeros(ctx.shape, dtype=g.dtype)
        if _is_basic(ctx.index):
            out[ctx.index] = g  # basic indexing never repeats an element
        else:
            xp.add.at(out, ctx.index, g)  # advanced indexing may repeat: accumulate
        return out


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in items)


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        cuts = np.cumsum(ctx.sizes)[:-1]
        return tuple(array_module(g).split(g, cuts, axis=ctx.axis))


def _add_rows_sorted(out, ids, rows):
    """``out[ids[r]] += rows[r]`` for every r, repeated ids included (NumPy arrays).

    The same sums as ``np.add.at(out, ids, rows)``, about 5x faster: sort the
    ids, add up each run of equal ids with one ``reduceat``, write each sum once.
    """
    if ids.size == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]  # (R,)
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # first row of each run
    out[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)


class Embedding(Function):
    """Row lookup ``weight[ids]``; the gradient adds each row's uses (scatter-add)."""

    @staticmethod
    def forward(ctx, weight, ids):
        ctx.ids, ctx.shape = ids, weight.shape
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        out = xp.zeros(ctx.shape, dtype=g.dtype)
        ids, rows = ctx.ids.reshape(-1), g.reshape(-1, ctx.shape[1])  # (R,), (R, D)
        if xp is np:
            _add_rows_sorted(out, ids, rows)
        else:
            xp.add.at(out, ids, rows)
        return out


def reshape(x, shape):
    """The same elements in a new shape (one entry may be -1)."""
    shape = tuple(shape)
    try:
        np.empty(x.shape, dtype=bool).reshape(shape)  # let NumPy validate; cheap (no data)
    except ValueError:
        raise ValueError(f"cannot reshape a tensor of shape {x.shape} into {shape}") from None
    return Reshape.apply(x, shape=shape)


def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None)."""
    axes = tuple(range(x.ndim))[::-1] if axes is None else normalize_axis(tuple(axes), x.ndim)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"axes {axes} is not a permutation of the {x.ndim} axes of {x.shape}")
    return Transpose.apply(x, axes=axes)


permute = transpose


def swapaxes(x, a, b):
    axes = list(range(x.ndim))
    a, b = normalize_axis((a, b), x.ndim)
    axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, axes=tuple(axes))


def expand(x, shape):
    """Broadcast ``x`` to ``shape`` without copying (size-1 axes repeat)."""
    shape = tuple(shape)
    try:
        ok = np.broadcast_shapes(x.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"cannot expand shape {x.shape} to {shape}")
    return Expand.apply(x, shape=shape)


def squeeze(x, axis=None):
    """Drop size-1 axes (all of them, or the ones named)."""
    axes = [i for i, n in enumerate(x.shape) if n == 1] if axis is None else normalize_axis(axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"cannot squeeze axis {a} of size {x.shape[a]} (shape {x.shape})")
    return reshape(x, [n for i, n in enumerate(x.shape) if i not in axes])


def unsqueeze(x, axis):
    """Insert a size-1 axis at ``axis``."""
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def getitem(x, index):
    """``x[index]`` with NumPy's basic and advanced indexing."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index=index)


def gather(x, index, axis):
    """``out[..., i, ...] = x[..., index[..., i, ...], ...]`` along ``axis``
    (``np.take_along_axis``), e.g. picking each row's label logit."""
    index = index.data if isinstance(index, Tensor) else asarray(index)
    axis = normalize_axis(axis, x.ndim)[0]
    grids = np.ogrid[tuple(slice(n) for n in index.shape)]
    full = tuple(like(index if i == axis else grids[i], x.data) for i in range(x.ndim))
    return GetItem.apply(x, index=full)


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat() needs at least one tensor")
    ax = normalize_axis(axis, tensors[0].ndim)[0]
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != ax
        ):
            raise ValueError(
                f"concat along axis {axis}: shapes {[x.shape for x in tensors]} differ off that axis"
            )
    return Concat.apply(*tensors, axis=ax)


def stack(tensors, axis=0):
    """Join tensors along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack() needs at least one tensor")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack() needs equal shapes, got {[t.shape for t in tensors]}")
    return concat([unsqueeze(t, axis) for t in tensors], axis=axis)


def split(x, sections, axis=0):
    """Cut ``x`` along ``axis`` into equal ``sections`` (an int) or at a list of sizes."""
    ax = normalize_axis(axis, x.ndim)[0]
    n = x.shape[ax]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"axis {axis} of size {n} does not split into {sections} equal parts")
        sizes = [n // sections] * sections
    else:
        sizes = list(sections)
        if builtin_sum(sizes) != n:
            raise ValueError(f"split sizes {sizes} do not add up to axis {axis} of size {n}")
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * ax + (slice(start, start + s),)
        out.append(getitem(x, index))
        start += s
    return out


builtin_sum = sum


def embedding(ids, weight):
    """Rows of ``weight (V, D)`` picked by integer ``ids (...)`` -> ``(..., D)``."""
    ids = ids.data if isinstance(ids, Tensor) else asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
        raise ValueError(
            f"embedding ids must lie in [0, {weight.shape[0]}), got range [{ids.min()}, {ids.max()}]"
        )
    return Embedding.apply(weight, ids=like(ids, weight.data))  # host ids index device weights on the device
