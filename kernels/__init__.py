"""minivl's kernels, installed as ``minivl.kernels``.

* ``reference`` -- the NumPy reference math: the spec every fast version meets;
* ``numba/``    -- CPU kernels compiled by Numba (``@njit(cache=True)``);
* ``cuda/``     -- CUDA C++ sources (``*.cu``) loaded by CuPy's RawModule.

This folder is always imported as ``minivl.kernels`` (pyproject maps it there).
The plain name ``kernels`` belongs to a PyPI package that ``transformers``
imports. Python started in the repository root (``python -m pytest``,
``python``, ``jupyter``) puts the root first on ``sys.path``, so a bare
``import kernels`` would find this folder instead. When that happens (this file
runs under the top-level name ``kernels``), it steps aside: it loads the real
``kernels`` package from the rest of ``sys.path`` into ``sys.modules``, and the
importer gets that one, or the usual ModuleNotFoundError when it is not
installed. ``tests/test_imports.py`` guards this.
"""

if __name__ == "kernels":  # imported by the bare name, from the repository root
    import importlib.util as _util
    import os as _os
    import sys as _sys
    from importlib.machinery import PathFinder as _PathFinder

    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _rest = [p for p in _sys.path if _os.path.abspath(p or _os.curdir) != _root]
    _spec = _PathFinder.find_spec("kernels", _rest)
    if _spec is None:
        del _sys.modules["kernels"]
        raise ModuleNotFoundError("No module named 'kernels'", name="kernels")
    _real = _util.module_from_spec(_spec)
    _sys.modules["kernels"] = _real
    try:
        _spec.loader.exec_module(_real)
    except BaseException:
        del _sys.modules["kernels"]
        raise
