"""Work only one rank should do: logging, evaluation, writing checkpoints.

Rank 0 does it; the others wait at a barrier, so that when ``on_rank0``
returns the checkpoint is on disk for every rank to resume from (each rank
then loads the same file: one copy of the truth, not one per rank).
"""

from __future__ import annotations


def is_rank0(communicator) -> bool:
    return communicator.rank == 0


def on_rank0(communicator, fn, *args, **kwargs):
    """Call ``fn`` on rank 0 only, then synchronise; returns rank 0's result on every rank."""
    result = fn(*args, **kwargs) if communicator.rank == 0 else None
    return communicator.bcast_object(result, root=0)
