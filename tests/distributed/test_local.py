"""minivl.distributed in one process (no MPI needed): sharding, the bucket
layout, the leaf-gradient hook that lets all-reduce overlap backward, the
local-loss InfoNCE, and the error when the MPI extra is missing."""

import sys

import numpy as np
import pytest

import minivl as mv
from minivl import nn
from minivl.distributed import (
    DataParallel,
    LocalCommunicator,
    distributed_info_nce,
    gather_with_grad,
    init,
    require_mpi,
    shard,
    shard_slice,
    sharded,
)
from minivl.distributed.data_parallel import _make_buckets
from minivl.losses import info_nce
from minivl.testing import gradcheck


def test_shards_tile_the_global_batch_in_rank_order():
    batch = np.arange(12)
    assert np.concatenate([shard(batch, r, 4) for r in range(4)]).tolist() == batch.tolist()
    assert shard_slice(12, 2, 3) == slice(8, 12)
    images, ids = shard((np.zeros((6, 2)), np.arange(6)), 1, 2)
    assert images.shape == (3, 2) and ids.tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="10 does not split evenly over 4 ranks"):
        shard_slice(10, 0, 4)
    with pytest.raises(ValueError, match=r"lengths \[3, 4\]"):
        shard((np.zeros(3), np.zeros(4)), 0, 1)
    assert next(sharded(iter([np.arange(4)]), LocalCommunicator())).tolist() == [0, 1, 2, 3]


def test_buckets_run_backwards_and_respect_the_size():
    params = [nn.Parameter(np.zeros(n, np.float32)) for n in (10, 20, 30, 40)]  # 40..160 bytes
    buckets = _make_buckets(params, bucket_bytes=200)
    assert [[p.size for p in b] for b in buckets] == [[40], [30, 20], [10]]
    assert [[p.size for p in b] for b in _make_buckets(params, 1)] == [[40], [30], [20], [10]]


def test_leaf_hook_fires_once_per_leaf_with_its_final_gradient():
    rng = np.random.default_rng(0)
    w = mv.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    x = mv.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    y = ((x @ w) @ w).sum() + (w * w).sum()  # w is used three times
    seen = {}
    y.backward(on_leaf_grad=lambda leaf: seen.setdefault(id(leaf), leaf.grad.copy()))
    assert set(seen) == {id(w), id(x)}
    np.testing.assert_array_equal(seen[id(w)], w.grad)
    np.testing.assert_array_equal(seen[id(x)], x.grad)


class _Recorder(LocalCommunicator):
    """A one-rank communicator that notes when each bucket is sent."""

    def __init__(self, log):
        self.log = log

    def start_allreduce_sum(self, array):
        self.log.append(("send", array.size))
        return super().start_allreduce_sum(array)


def test_data_parallel_sends_buckets_during_backward_and_keeps_gradients():
    mv.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    model(x).sum().backward()
    expected = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    log = []
    dp = DataParallel(model, _Recorder(log), bucket_bytes=100)
    first_layer = model[0].weight

    def watch(leaf, original=dp._leaf_done):
        if leaf is first_layer:
            log.append(("first layer done", 0))
        original(leaf)

    dp._leaf_done = watch
    dp.backward(model(x).sum())
    # the last layer's bucket left before backward reached the first layer
    assert log.index(("send", 8 * 2 + 2)) < log.index(("first layer done", 0))
    for p, g in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad, g, rtol=1e-6)
    assert dp.average(3.0) == 3.0


def test_one_rank_info_nce_and_local_loss_equal_the_plain_loss():
    rng = np.random.default_rng(2)
    comm = init(distributed=False)
    img = mv.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    txt = mv.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    scale = mv.tensor(np.array(0.5), requires_grad=True)
    plain = info_nce(img, txt, scale).item()
    for local in (False, True):
        assert distributed_info_nce(img, txt, scale, comm, local_loss=local).item() == pytest.approx(plain, abs=1e-12)
        gradcheck(lambda a, b, s, local=local: distributed_info_nce(a, b, s, comm, local_loss=local), img, txt, scale)
    gradcheck(lambda a: gather_with_grad(a, comm) * 2.0, img)


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[mpi\]"'):
        require_mpi()
    with pytest.raises(ImportError, match="--distributed needs mpi4py"):
        init(distributed=True)
