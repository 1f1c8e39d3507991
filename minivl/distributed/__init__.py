"""Data-parallel training over MPI (optional: ``pip install -e ".[mpi]"``).

``mpirun -n 4 python train.py`` starts four copies of one program; each is a
rank. ``init()`` gives the communicator (size 1 without MPI), ``sharded`` cuts
every global batch into the rank's rows, ``DataParallel`` averages gradients
in buckets overlapped with backward, and ``distributed_info_nce`` computes
CLIP's loss over the global batch with the gradient flowing back through the
all-gather. Lecture notes: ``lectures/07-scale.md``.
"""

from minivl.distributed.comm import (
    Communicator,
    DistributedError,
    LocalCommunicator,
    abort_on_error,
    init,
    require_mpi,
)
from minivl.distributed.contrastive import distributed_info_nce, gather_with_grad
from minivl.distributed.data_parallel import DataParallel, data_parallel_for, is_main
from minivl.distributed.rank0 import is_rank0, on_rank0
from minivl.distributed.sharding import shard, shard_slice, sharded

__all__ = [
    "Communicator", "DataParallel", "DistributedError", "LocalCommunicator", "abort_on_error",
    "data_parallel_for", "distributed_info_nce", "gather_with_grad", "init", "is_main", "is_rank0",
    "on_rank0", "require_mpi", "shard", "shard_slice", "sharded",
]
