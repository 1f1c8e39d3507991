"""``minivl tour``: the command line over ``minivl.recipes.tour``: train every
model of the lecture at tiny scale and write a report."""

from __future__ import annotations

from minivl.recipes.tour import STAGES, run_tour


def _run(args):
    if args.backend_tour:
        import minivl

        minivl.use(args.backend_tour)
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(STAGES):
        raise SystemExit(f"--only takes stages from {', '.join(STAGES)}; got {args.only}")
    run_tour(args.out, quick=args.quick, progress=not args.no_progress, only=only)
    return 0


def register(subparsers):
    p = subparsers.add_parser("tour", help="train every model of the lecture and write a report")
    p.add_argument("--quick", action="store_true",
                   help="short runs: about 4 minutes on 2 cores (results/tour_quick.json)")
    p.add_argument("--out", default="runs/tour", help="report folder (default: runs/tour)")
    p.add_argument("--only", default=None, help=f"comma-separated stages from {','.join(STAGES)}")
    p.add_argument("--use", dest="backend_tour", choices=["numpy", "numba", "cuda"], default="numba",
                   help="kernel backend for the tour (default: numba, the fast CPU kernels; cuda: "
                        "train on the GPU with minivl's CUDA kernels, needs CuPy and a GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
