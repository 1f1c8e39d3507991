"""The ``minivl`` command (also ``python -m minivl``).

Subcommands live one per module in ``minivl/commands/``; see ``minivl --help``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import minivl.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivl",
        description="Vision-and-language transformers from scratch in NumPy: train them, tour them.",
    )
    parser.add_argument("--version", action="version", version=f"minivl {minivl.__version__}")
    parser.add_argument("--backend", choices=["numpy", "numba", "cuda"], default=None,
                        help="kernel backend (default: $MINIVL_BACKEND or numpy)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for BLAS products and the Numba kernels (default: "
                             "$MINIVL_THREADS, else 1 for each pool whose own variable "
                             "(OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, NUMBA_NUM_THREADS) is unset: "
                             "the lecture's small models run faster on one; see minivl/threads.py)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(minivl.commands.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"minivl.commands.{mod.name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from minivl.threads import default_threads, limit_threads

    try:
        n = args.threads
        limit_threads(**({"blas": n, "numba": n} if n is not None else default_threads()))
    except ValueError as err:
        parser.error(str(err))
    if args.backend:
        minivl.use(args.backend)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
