"""minivl's kernels, installed as ``minivl.kernels``.

* ``reference`` -- the NumPy reference math: the spec every fast version meets;
* ``numba/``    -- CPU kernels compiled by Numba (``@njit(cache=True)``);
* ``cuda/``     -- CUDA C++ sources (``*.cu``) loaded by CuPy's RawModule.

Never import this directory as a top-level ``kernels`` package: the name
belongs to someone else on PyPI; it is always ``minivl.kernels``.
"""
