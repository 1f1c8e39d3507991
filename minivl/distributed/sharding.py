"""Deterministic shards of a global batch.

The global batch of a step is drawn exactly as a single process would draw
it (the data code is seeded by step, never by rank); rank r then keeps the
contiguous rows ``[r * n, (r + 1) * n)``, n = global batch / size. So the
optimisation does not depend on the number of ranks, and the contrastive
labels of ``distributed_info_nce`` (``r * n + i``) point at the right rows.
"""

from __future__ import annotations


def shard_slice(global_batch: int, rank: int, size: int) -> slice:
    """The rows of the global batch that ``rank`` of ``size`` processes."""
    if global_batch % size:
        raise ValueError(f"the global batch of {global_batch} does not split evenly over {size} ranks; "
                         f"choose a batch size divisible by {size}")
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    n = global_batch // size
    return slice(rank * n, (rank + 1) * n)


def shard(batch, rank: int, size: int):
    """This rank's rows of every array in ``batch`` (an array, or a tuple or dict of
    arrays sharing their first axis)."""
    if isinstance(batch, dict):
        rows = shard(tuple(batch.values()), rank, size)
        return dict(zip(batch.keys(), rows))
    arrays = batch if isinstance(batch, tuple) else (batch,)
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"shard: the arrays of a batch must share their first axis, got lengths {sorted(lengths)}")
    rows = shard_slice(lengths.pop(), rank, size)
    out = tuple(a[rows] for a in arrays)
    return out if isinstance(batch, tuple) else out[0]


def sharded(batches, communicator):
    """Wrap an iterator of global batches: yield this rank's shard of each."""
    for batch in batches:
        yield shard(batch, communicator.rank, communicator.size)
