"""``minivl.device`` and the backend choice for arrays, without a GPU: which arrays
``to_device`` moves, that moving one to the GPU turns on the host-constant copy of
``Function.apply``, and which kernels serve a host array under ``use("cuda")``.
(Each of these broke on the first real-GPU run and none shows under the emulator,
where "device" arrays are NumPy arrays.)"""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest

import minivl as mv
from minivl import backend
from minivl.device import to_device


@pytest.fixture
def fake_gpu(monkeypatch):
    """CuPy stood in for by a module whose ``asarray`` tags what it moved."""
    from minivl.kernels.cuda import loader

    moved = []

    def asarray(a):
        moved.append(a)
        return np.asarray(a)

    monkeypatch.setattr(loader, "available", lambda: True)
    monkeypatch.setattr(loader, "cupy", lambda: types.SimpleNamespace(asarray=asarray))
    tensor_module = importlib.import_module("minivl.tensor")
    monkeypatch.setattr(tensor_module, "_GPU_SEEN", False)
    return moved


def test_to_device_moves_floats_and_leaves_ids_labels_and_masks_on_the_host(fake_gpu):
    ids = np.arange(6).reshape(2, 3)
    mask = ids > 1
    answers = np.array(["red", "circle"])  # CuPy has no string arrays
    images = np.zeros((2, 1, 4, 4), np.float32)
    out = to_device((ids, mask, answers, images), "cuda")
    assert out[0] is ids and out[1] is mask and out[2] is answers  # the models check these as NumPy arrays
    assert len(fake_gpu) == 1 and fake_gpu[0] is images


def test_moving_an_array_to_the_gpu_turns_on_the_host_constant_copy(fake_gpu):
    tensor_module = importlib.import_module("minivl.tensor")
    to_device(np.ones(3, np.float32), "cuda")
    assert tensor_module._GPU_SEEN is True


def test_a_host_array_under_the_cuda_backend_runs_on_the_cpu_kernels():
    before = backend.current()
    try:
        mv.use("cuda")
        assert backend.for_array(np.ones(3)).name == "numba"
        from minivl.kernels.cuda import emulate

        if emulate.available():
            with emulate.on_cpu():  # emulated: NumPy arrays are the device's
                assert backend.for_array(np.ones(3)).name == "cuda"
    finally:
        mv.use(before)


def test_dropout_draws_on_the_device_generator_for_device_arrays(monkeypatch):
    """With an array module other than NumPy (CuPy on a GPU; here a stand-in that records
    its draws), dropout takes its mask from ``minivl.random.device_rng``, reseeded by
    ``manual_seed``, instead of drawing on the host."""
    import minivl.functional.normalization as norm
    from minivl import random as mv_random

    draws = []

    class DeviceRandomState:
        def __init__(self, seed):
            self.rs = np.random.RandomState(seed)

        def random_sample(self, shape, dtype):
            draws.append((shape, dtype))
            return self.rs.random_sample(shape).astype(dtype)

    stand_in = types.SimpleNamespace(random=types.SimpleNamespace(RandomState=DeviceRandomState),
                                     asarray=np.asarray)
    monkeypatch.setattr(norm, "array_module", lambda a: stand_in)

    def masked():
        mv.manual_seed(5)
        host_before = mv_random.rng().bit_generator.state["state"]["state"]
        y = norm.dropout(mv.tensor(np.ones((40, 50), np.float32)), p=0.5)
        return y.data, host_before

    y, _ = masked()
    assert draws == [((40, 50), np.float32)]
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y > 0).mean() < 0.6
    y_again, _ = masked()
    np.testing.assert_array_equal(y_again, y)  # manual_seed resets the device generator too
