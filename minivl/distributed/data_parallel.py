"""Data parallelism: one model replicated on every rank, each rank a shard of
the global batch, gradients averaged with all-reduce before the optimizer
step (the scheme of PyTorch's DistributedDataParallel, Li et al. 2020,
"PyTorch Distributed: Experiences on Accelerating Data Parallel Training").

Two of DDP's ideas, kept because they are simple:

* **buckets**: gradients are flattened into a few contiguous buffers of about
  ``bucket_bytes`` each, so one message carries many parameters (a message
  has a fixed latency; hundreds of tiny ones would pay it hundreds of times);
* **overlap**: parameters go into buckets in reverse order of definition,
  roughly the order backward finishes them; a bucket's non-blocking
  all-reduce starts as soon as its last gradient is complete
  (``Tensor.backward(on_leaf_grad=...)``), while backward carries on with the
  earlier layers. Buckets start strictly in index order, so every rank issues
  the same collectives in the same order, as MPI requires.

If every rank's loss is the mean over its equal shard, the average of the
ranks' gradients is the gradient of the mean over the global batch: the same
step a single process would take on the whole batch.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from minivl.distributed.sharding import shard
from minivl.tensor import array_module


class DataParallel:
    """Wraps a model's gradient exchange. Use ``dp.backward(loss)`` in place of
    ``loss.backward()``; after it every parameter's ``.grad`` is the average
    over ranks."""

    def __init__(self, model, communicator, bucket_bytes=1 << 20, overlap=True, broadcast=True):
        self.model, self.communicator = model, communicator
        self.overlap = overlap
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("DataParallel: the model has no trainable parameters")
        communicator.check_same([[list(p.shape), str(p.dtype)] for p in self.params], "model parameters")
        self.buckets = _make_buckets(self.params, bucket_bytes)
        self._bucket_of = {id(p): b for b, bucket in enumerate(self.buckets) for p in bucket}
        if broadcast:
            self.broadcast_parameters()
        self.bytes_per_step = sum(p.data.nbytes for p in self.params)

    def broadcast_parameters(self):
        """Every rank starts from rank 0's weights (whatever its own seed made)."""
        state = self.communicator.bcast_object([np.asarray(p.numpy()) for p in self.params], root=0)
        for p, value in zip(self.params, state):
            xp = array_module(p.data)
            p.data = xp.asarray(value, dtype=p.dtype)

    # ------------------------------------------------------------ one step
    def backward(self, loss):
        """``loss.backward()``, then the averaged gradients in every ``.grad``."""
        self._ready = [0] * len(self.buckets)
        self._pending = []
        hook = self._leaf_done if self.overlap else None
        loss.backward(on_leaf_grad=hook)
        self.finish()

    def _leaf_done(self, leaf):
        b = self._bucket_of.get(id(leaf))
        if b is None:
            return
        self._ready[b] += 1
        while len(self._pending) < len(self.buckets) and \
                self._ready[len(self._pending)] == len(self.buckets[len(self._pending)]):
            self._start(len(self._pending))  # the next bucket in order is complete: send it

    def _start(self, b):
        bucket = self.buckets[b]
        xp = array_module(bucket[0].data)
        flat = xp.concatenate([(p.grad if p.grad is not None else xp.zeros_like(p.data)).ravel()
                               for p in bucket])  # (sum of sizes,)
        self._pending.append(self.communicator.start_allreduce_sum(flat))

    def finish(self):
        """Start the buckets backward did not complete, wait for all, write averages back."""
        while len(self._pending) < len(self.buckets):
            self._start(len(self._pending))
        size = self.communicator.size
        for b, (bucket, pending) in enumerate(zip(self.buckets, self._pending)):
            flat = pending.wait(f"gradient all-reduce of bucket {b}")
            offset = 0
            for p in bucket:
                n = p.data.size
                p.grad = (flat[offset:offset + n] / size).reshape(p.shape).astype(p.dtype, copy=False)
                offset += n
        self._pending = []

    def shard(self, batch):
        """This rank's rows of a global batch (an array or a tuple of arrays)."""
        return shard(batch, self.communicator.rank, self.communicator.size)

    def average(self, value: float) -> float:
        """A number (the loss, a metric) averaged over ranks, for logging."""
        return float(self.communicator.allreduce_sum(np.array([value], np.float64))[0]) / self.communicator.size


def _make_buckets(params, bucket_bytes):
    """Reverse definition order, greedily packed up to ``bucket_bytes`` (at least one
    parameter per bucket); all parameters of a bucket share a dtype."""
    buckets, current, size = [], [], 0
    for p in reversed(params):
        if current and (size + p.data.nbytes > bucket_bytes or p.dtype != current[0].dtype):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += p.data.nbytes
    buckets.append(current)
    return buckets


def data_parallel_for(model, distributed, config=None):
    """What a ``train`` command passes to ``minivl.train.train``: ``None`` for one
    process, else a ``DataParallel`` over ``MPI.COMM_WORLD`` after checking that
    every rank runs the same ``config``; ranks other than 0 then print nothing.
    ``distributed=True`` without mpi4py is an ImportError naming the extra;
    started without ``mpirun`` it is one process."""
    if not distributed:
        return None
    from minivl.distributed.comm import init

    communicator = init(distributed=True)
    if communicator.size == 1:
        return None
    communicator.check_same(config or {}, "training configuration")
    if communicator.rank != 0:  # rank 0 logs for all; errors still reach stderr
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return DataParallel(model, communicator)


def is_main(data_parallel) -> bool:
    """True on the rank that logs, evaluates and writes checkpoints."""
    return data_parallel is None or data_parallel.communicator.rank == 0
