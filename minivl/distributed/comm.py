"""The communicator: a thin layer over mpi4py (Dalcin et al., "mpi4py: Status
Update After 12 Years of Development", 2021), the one distributed engine
minivl uses; nothing here reimplements message passing.

``init()`` returns a ``Communicator``: with mpi4py installed and more than one
process it wraps ``MPI.COMM_WORLD``; otherwise a ``LocalCommunicator`` of
size 1, so the same training code runs on a laptop without MPI.

What the wrapper adds to mpi4py, and why:

* every blocking wait has a **timeout** (``MINIVL_DIST_TIMEOUT``, default
  120 s): MPI itself waits forever for a rank that died or hangs;
* ``check_in`` is a cheap per-step roll call to rank 0, so a timeout can say
  *which* rank is missing;
* an uncaught exception on any rank prints ``rank r of n failed: ...`` and
  aborts the whole job (``MPI_Abort``) instead of leaving the others waiting;
* ``check_same`` refuses to start when the ranks' configurations differ;
* CuPy arrays are passed to MPI directly when it is CUDA-aware
  (``cuda_aware=True``), else staged through host memory.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from minivl.tensor import array_module

DEFAULT_TIMEOUT = float(os.environ.get("MINIVL_DIST_TIMEOUT", "120"))
MPI_EXTRA_HINT = 'install the MPI extra: pip install -e ".[mpi]" (mpi4py and an MPICH wheel from PyPI)'


class DistributedError(RuntimeError):
    """Ranks disagree, or one of them failed or stopped answering."""


def require_mpi():
    """The ``mpi4py.MPI`` module, or an ImportError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:  # the extra is missing
        raise ImportError(f"--distributed needs mpi4py: {MPI_EXTRA_HINT} ({e})") from None
    return MPI


def _is_device(a):
    return not isinstance(a, np.ndarray) and hasattr(a, "__cuda_array_interface__")


class LocalCommunicator:
    """One process: every collective is the identity. Same methods as ``Communicator``."""

    rank, size = 0, 1
    timeout = DEFAULT_TIMEOUT

    def allreduce_sum(self, array):
        return array.copy()

    def allgather(self, array):
        return array.copy()

    def reduce_scatter_sum(self, array):
        return array.copy()

    def start_allreduce_sum(self, array):
        return _Done(array)

    def bcast_object(self, obj, root=0):
        return obj

    def allgather_object(self, obj):
        return [obj]

    def check_in(self, label=""):
        pass

    def check_same(self, config, what="configuration"):
        return config

    def barrier(self):
        pass


class _Done:
    """A finished request (what the local communicator hands back)."""

    def __init__(self, array):
        self.result = array

    def wait(self, what=""):
        return self.result


class Communicator:
    """``MPI.COMM_WORLD`` with timeouts, named failures and host staging."""

    def __init__(self, comm=None, timeout=DEFAULT_TIMEOUT, cuda_aware=False):
        MPI = require_mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout, self.cuda_aware = float(timeout), cuda_aware
        self._calls = 0

    # ------------------------------------------------------------ waiting with a deadline
    def _wait(self, request, what):
        """Poll ``request`` until it completes; past the deadline raise, naming this rank."""
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not request.Test():
            if time.monotonic() > deadline:
                raise DistributedError(f"rank {self.rank} of {self.size}: {what} did not complete within "
                                       f"{self.timeout:.0f} s (MINIVL_DIST_TIMEOUT); another rank failed or hangs")
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)

    def _host(self, array):
        """Where MPI reads and writes: the array itself, or a host copy of a GPU array."""
        if _is_device(array) and not self.cuda_aware:
            return np.ascontiguousarray(array.get())
        return array if array.flags.c_contiguous else array.copy()

    def _back(self, host, like):
        if _is_device(like) and not self.cuda_aware:
            import cupy

            return cupy.asarray(host)
        return host

    # ------------------------------------------------------------ collectives on arrays
    def start_allreduce_sum(self, array):
        """Begin a non-blocking sum over ranks; ``.wait()`` returns the result."""
        send = self._host(array)
        recv = send.copy()
        request = self.comm.Iallreduce(send, recv, op=self.MPI.SUM)
        return _Pending(self, request, recv, array, "all-reduce")

    def allreduce_sum(self, array):
        return self.start_allreduce_sum(array).wait()

    def allgather(self, array):
        """``(n, ...)`` on each rank -> ``(size * n, ...)``, rank 0's rows first."""
        send = self._host(array)
        recv = array_module(send).empty((self.size * send.shape[0],) + send.shape[1:], send.dtype)
        self._wait(self.comm.Iallgather(send, recv), f"all-gather of {array.shape}")
        return self._back(recv, array)

    def reduce_scatter_sum(self, array):
        """``(size * n, ...)`` on each rank -> this rank's ``(n, ...)`` block of the sum
        over ranks: the adjoint of ``allgather``."""
        send = self._host(array)
        if send.shape[0] % self.size:
            raise ValueError(f"reduce_scatter_sum: {send.shape[0]} rows do not split over {self.size} ranks")
        recv = array_module(send).empty((send.shape[0] // self.size,) + send.shape[1:], send.dtype)
        self._wait(self.comm.Ireduce_scatter_block(send, recv, op=self.MPI.SUM),
                   f"reduce-scatter of {array.shape}")
        return self._back(recv, array)

    # ------------------------------------------------------------ small Python objects
    def bcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj):
        return self.comm.allgather(obj)

    def barrier(self):
        self._wait(self.comm.Ibarrier(), "barrier")

    def check_same(self, config, what="configuration"):
        """Raise on every rank if the ranks' ``config`` (a JSON-able dict) differ."""
        mine = json.dumps(config, sort_keys=True, default=str)
        every = self.allgather_object(mine)
        differ = [r for r, c in enumerate(every) if c != every[0]]
        if differ:
            first = json.loads(every[differ[0]])
            reference = json.loads(every[0])
            keys = sorted(k for k in set(first) | set(reference) if first.get(k) != reference.get(k))
            raise DistributedError(f"the ranks disagree on the {what}: rank(s) {differ} differ from rank 0 "
                                   f"in {keys} (rank 0: {[reference.get(k) for k in keys]}, rank {differ[0]}: "
                                   f"{[first.get(k) for k in keys]})")
        return config

    def check_in(self, label=""):
        """A roll call: every rank reports to rank 0, which answers once all have.

        Rank 0 names the ranks that did not report within the timeout; the
        others name rank 0 if it never answers. One tiny message each way.
        """
        self._calls += 1
        tag = 7000 + self._calls % 1000
        if self.rank == 0:
            flags = [np.zeros(1, np.int64) for _ in range(self.size)]
            requests = {r: self.comm.Irecv(flags[r], source=r, tag=tag) for r in range(1, self.size)}
            deadline = time.monotonic() + self.timeout
            while requests:
                requests = {r: q for r, q in requests.items() if not q.Test()}
                if requests and time.monotonic() > deadline:
                    raise DistributedError(f"rank 0: rank(s) {sorted(requests)} did not reach {label or 'the step'} "
                                           f"within {self.timeout:.0f} s (failed or hung)")
                time.sleep(1e-4)
            go = np.ones(1, np.int64)
            for r in range(1, self.size):
                self.comm.Send(go, dest=r, tag=tag)
        else:
            self.comm.Send(np.full(1, self.rank, np.int64), dest=0, tag=tag)
            go = np.zeros(1, np.int64)
            request = self.comm.Irecv(go, source=0, tag=tag)
            self._wait(request, f"waiting for rank 0 at {label or 'the step'}")


class _Pending:
    """A started non-blocking collective."""

    def __init__(self, communicator, request, recv, like, what):
        self.communicator, self.request, self.recv, self.like, self.what = communicator, request, recv, like, what

    def wait(self, what=None):
        self.communicator._wait(self.request, what or self.what)
        return self.communicator._back(self.recv, self.like)


def abort_on_error(communicator):
    """Make an uncaught exception on one rank end the whole job, naming the rank."""
    if communicator.size == 1:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"[minivl.distributed] rank {communicator.rank} of {communicator.size} failed "
                         f"({kind.__name__}: {value}); aborting every rank\n")
        sys.stderr.flush()
        communicator.comm.Abort(1)

    sys.excepthook = hook


def init(distributed=True, timeout=DEFAULT_TIMEOUT, cuda_aware=False):
    """The communicator for this process.

    ``distributed=False``, or a single process started without ``mpirun``, gives
    a ``LocalCommunicator``. ``distributed=True`` without mpi4py is an
    ImportError naming the extra to install.
    """
    if not distributed:
        return LocalCommunicator()
    MPI = require_mpi()
    if MPI.COMM_WORLD.Get_size() == 1:
        return LocalCommunicator()
    communicator = Communicator(MPI.COMM_WORLD, timeout=timeout, cuda_aware=cuda_aware)
    abort_on_error(communicator)
    return communicator
