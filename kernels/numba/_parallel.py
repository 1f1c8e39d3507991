"""Every parallel kernel built twice, Numba's parallel build and a serial one, and one picked per call.

Why: with more than one Numba thread minivl runs Numba's ``workqueue`` layer
(``minivl/threads.py``), whose workers sleep between kernels, and entering a
parallel kernel wakes them and waits for them: about 115 us for an empty kernel
on the 2-core test machine (``benchmarks/results/numba_layers_cpu.json``). A
training step of the lecture's small models calls hundreds of kernels on a few
thousand elements each, where that wake-up costs more than the work. So a call
whose work is below ``SERIAL_BELOW`` elements takes the serial build, and only
large calls take the parallel one. The rule is the same at one thread (the
OpenMP layer): entering a parallel kernel costs about 1 us there, the serial
build is that much faster on small calls, and on large ones the parallel build
is as fast or faster (its softmax forward vectorises better, 0.8x).
(``benchmarks/bench_serial_kernels.py`` measures where the two builds cross.)

The serial build is the same Python function compiled without ``parallel``:
``prange`` is then plain ``range`` and the results are the same numbers. It is
compiled from a copy of the function under its own name, because Numba's
on-disk cache keys a function by its name and line, not by its compile flags:
the two builds would otherwise overwrite each other's cached machine code.

    @parallel_kernel(**JIT_OPTIONS)
    def _rows_kernel(x, y):
        for r in prange(x.shape[0]): ...

    _rows_kernel(x, y)                  # serial or parallel by x.size
    _rows_kernel(q, k, v, work=n_flops)  # a better measure of the work, when the first array is not
"""

from __future__ import annotations

import contextlib
import types

from numba import njit

# Calls with fewer elements of work than this run serially: where the parallel build starts to win
# at two threads on the 2-core test machine (benchmarks/bench_serial_kernels.py,
# benchmarks/results/serial_kernels_cpu.json): about 2**18 elements for the kernels that compute
# an exp per element (softmax and GELU forward, GELU backward), and beyond 2**20 for those that
# only stream memory (layer norm, softmax backward), which take ``SERIAL_BELOW_LIGHT``.
SERIAL_BELOW = 1 << 18
SERIAL_BELOW_LIGHT = 1 << 21



class Switch:
    """A choice that tests and benchmarks force for a block, ``with switch.forced("serial"):``;
    ``value`` is None outside every such block (then the caller decides by size)."""

    def __init__(self, *choices: str):
        self.choices, self.value = choices, None

    @contextlib.contextmanager
    def forced(self, which: str):
        if which not in self.choices:
            raise ValueError(f"which must be one of {self.choices}, got {which!r}")
        before, self.value = self.value, which
        try:
            yield
        finally:
            self.value = before


BUILD = Switch("serial", "parallel")  # forced by ``forced_build`` (the tests use it)


def _renamed_copy(fn):
    """A new function object with ``fn``'s code and a name of its own (``<name>_serial``)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + "_serial"
    copy.__doc__, copy.__module__ = fn.__doc__, fn.__module__
    return copy


class TwoBuilds:
    """A kernel compiled as ``parallel`` (``prange`` shared among Numba's threads) and ``serial``."""

    def __init__(self, fn, options: dict, serial_below: int | None = None):
        self.serial_below = serial_below  # None: the module's SERIAL_BELOW at call time
        self.parallel = njit(parallel=True, **options)(fn)
        self.serial = njit(**options)(_renamed_copy(fn))
        self.__name__, self.__qualname__, self.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        self.__wrapped__ = fn

    def pick(self, work: int):
        """The build a call with ``work`` elements of work takes."""
        if BUILD.value is not None:
            return getattr(self, BUILD.value)
        below = SERIAL_BELOW if self.serial_below is None else self.serial_below
        return self.serial if work < below else self.parallel

    def __call__(self, *args, work: int | None = None):
        return self.pick(args[0].size if work is None else work)(*args)


def parallel_kernel(serial_below: int | None = None, **options):
    """Decorator: ``TwoBuilds`` of the function, both compiled with ``options`` (e.g. ``cache``);
    ``serial_below``: this kernel's own threshold (e.g. ``SERIAL_BELOW_LIGHT``)."""
    return lambda fn: TwoBuilds(fn, options, serial_below)


def forced_build(which: str):
    """Every ``TwoBuilds`` call inside takes ``which`` ("serial" or "parallel") whatever its size."""
    return BUILD.forced(which)
