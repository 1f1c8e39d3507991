"""Command-line options every ``minivl <model> train`` shares, declared once.

(A module whose name starts with ``_`` is not a command: ``minivl.cli`` skips it.)
"""

from __future__ import annotations


def add_training_options(parser, *, steps, batch_size, lr, depth, out, out_help,
                         steps_help=None, batch_help=None):
    """``--steps --batch-size --dim --depth --heads --lr --seed --out --quiet --distributed`` with
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
    parser.add_argument("--distributed", action="store_true",
                        help="data parallel over MPI: run as 'mpirun -n 4 minivl ... train --distributed' "
                             '(needs pip install -e ".[mpi]"; lectures/07-scale.md)')
