"""Shared pytest set-up: the hypothesis 'ci' profile, a fixed seed per test,
the backend reset, and clean skips for GPU tests on machines without one."""

from __future__ import annotations

import os

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

settings.register_profile(
    "ci", deadline=None, max_examples=25, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    """Under pytest-xdist each worker gets one BLAS / Numba thread: two workers
    on two cores each spawning two threads would fight and run many times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from minivl.threads import limit_threads

        limit_threads(blas=1, numba=1)


@pytest.fixture(autouse=True)
def _seed_and_backend():
    """Every test starts from seed 0 on the numpy backend."""
    import minivl

    minivl.manual_seed(0)
    before = minivl.backend.current()
    minivl.use("numpy")
    yield
    minivl.use(before)


def _gpu_present() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "no GPU"
        return False


def pytest_collection_modifyitems(config, items):
    if _gpu_present():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy installed (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
