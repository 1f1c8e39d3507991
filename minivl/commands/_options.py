"""Command-line options every ``minivl <model> train`` shares, declared once.

(A module whose name starts with ``_`` is not a command: ``minivl.cli`` skips it.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def add_training_options(parser, *, steps, batch_size, lr, depth, out, out_help,
                         steps_help=None, batch_help=None):
    """``--steps --batch-size --dim --depth --heads --lr --seed --out --quiet --resume --distributed`` with
    this model's defaults (``None`` for steps or batch size: chosen per task)."""
    parser.add_argument("--steps", type=int, default=steps, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    parser.add_argument("--dim", type=int, default=64, help="width of every transformer")
    parser.add_argument("--depth", type=int, default=depth, help="transformer blocks per tower")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=lr, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=out, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", default=None,
                        help="a checkpoint written to --out by an earlier run: continue it to --steps")
    parser.add_argument("--distributed", action="store_true",
                        help="data parallel over MPI: run as 'mpirun -n 4 minivl ... train --distributed' "
                             '(needs pip install -e ".[mpi]"; lectures/07-scale.md)')


def write_results(path, command, args, results) -> Path:
    """Write ``results`` as JSON to ``path``, with the command line that produced them."""
    import json
    import platform
    import time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in args.items() if k != "func" and isinstance(v, (int, float, str, bool, type(None)))}
    payload = {"command": "minivl " + " ".join(sys.argv[1:]),
        "options": options, "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": _plain(results)}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def _plain(value):
    """JSON-ready copy: numpy scalars to floats, drop what JSON cannot hold."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if _plain(v) is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return None
