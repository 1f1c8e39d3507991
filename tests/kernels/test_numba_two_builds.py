"""Both builds of every parallel Numba kernel (kernels/numba/_parallel.py): the serial
build and the parallel one each match the float64 reference, whichever a call would
have picked; small calls take the serial build, large calls the parallel one (a
memory-bound kernel at a higher threshold); the two builds keep separate cache files."""

import functools

import numpy as np
import pytest
from minivl.kernels import reference as ref
from minivl.kernels.numba import _parallel, bias_gelu, gelu, layer_norm, softmax
from minivl.kernels.numba import attention as nb_attention
from minivl.kernels.numba._parallel import SERIAL_BELOW, SERIAL_BELOW_LIGHT, TwoBuilds, forced_build

RNG = np.random.default_rng(0)
X = RNG.standard_normal((37, 70))
DY = RNG.standard_normal(X.shape)
GAMMA, BETA = RNG.standard_normal(70), RNG.standard_normal(70)


@functools.cache
def _attention_case(nk, causal):
    """the same inputs for every build and the reference"""
    q = RNG.standard_normal((2, 3, 20, 8))
    k, v = RNG.standard_normal((2, 3, nk, 8)), RNG.standard_normal((2, 3, nk, 8))
    mask = np.ones((2, nk), bool)
    mask[1, -3:] = False
    do = RNG.standard_normal((2, 3, 20, 8))
    return q, k, v, mask, causal, do


def _attention(module, nk, causal):
    """forward and backward of ``module``'s attention, as one tuple of arrays"""
    q, k, v, mask, causal, do = _attention_case(nk, causal)
    o, lse = module.attention_forward(q, k, v, mask, causal=causal)
    return (o, lse, *module.attention_backward(q, k, v, o, lse, do, mask, causal=causal))


def _gelu(m, form):
    return m.gelu_forward(X, form), m.gelu_backward(X, DY, form)


CASES = {
    "softmax": lambda m: (m.softmax_forward(X), m.softmax_backward(m.softmax_forward(X), DY)),
    "log_softmax": lambda m: (m.log_softmax_forward(X), m.log_softmax_backward(m.log_softmax_forward(X), DY)),
    "layer_norm": lambda m: (*m.layer_norm_forward(X, GAMMA, BETA),
                             *m.layer_norm_backward(DY, X, GAMMA, *m.layer_norm_forward(X, GAMMA, BETA)[1:])),
    **{f"gelu_{form}": functools.partial(_gelu, form=form) for form in ("none", "tanh", "sigmoid")},
    "bias_gelu": lambda m: (m.bias_gelu_forward(X, GAMMA), *m.bias_gelu_backward(X, GAMMA, DY)),
    "attention_short_rows": lambda m: _attention(m, 12, False),
    "attention_short_rows_causal": lambda m: _attention(m, 20, True),
    "attention_tiled": lambda m: _attention(m, 150, False),
    "attention_tiled_causal": lambda m: _attention(m, 150, True),
}
MODULES = {"softmax": softmax, "log_softmax": softmax, "layer_norm": layer_norm, "bias_gelu": bias_gelu}


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_build_matches_the_reference(case, build):
    module = MODULES.get(case, gelu if case.startswith("gelu") else nb_attention)
    with forced_build(build):
        got = CASES[case](module)
    want = CASES[case](ref)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)


def _kernel():
    return softmax._softmax_forward_rows


def test_small_work_takes_the_serial_build():
    kernel = _kernel()
    assert isinstance(kernel, TwoBuilds)
    assert kernel.pick(SERIAL_BELOW - 1) is kernel.serial
    assert kernel.pick(SERIAL_BELOW) is kernel.parallel
    light = layer_norm._forward_rows  # streams memory: its own, higher threshold
    assert light.pick(SERIAL_BELOW) is light.serial and light.pick(SERIAL_BELOW_LIGHT) is light.parallel
    with forced_build("parallel"):
        assert kernel.pick(1) is kernel.parallel
    with forced_build("serial"):
        assert kernel.pick(10 * SERIAL_BELOW) is kernel.serial
    assert _parallel.BUILD.value is None
    with pytest.raises(ValueError, match="which"):
        with forced_build("gpu"):
            pass


def test_a_call_passes_its_work_hint(monkeypatch):
    kernel = _kernel()
    seen = []
    monkeypatch.setattr(TwoBuilds, "pick", lambda self, work: seen.append(work) or self.serial)
    x = np.zeros((3, 4))
    kernel(x, np.empty_like(x))
    kernel(x, np.empty_like(x), work=10**6)
    assert seen == [12, 10**6]


def test_the_two_builds_cache_under_different_names():
    kernel = _kernel()
    serial, parallel = kernel.serial.py_func, kernel.parallel.py_func
    assert serial.__code__ is parallel.__code__  # one source, compiled twice
    assert serial.__qualname__ != parallel.__qualname__  # Numba's cache file is named by qualname
    assert kernel.parallel.targetoptions.get("parallel") and not kernel.serial.targetoptions.get("parallel")
