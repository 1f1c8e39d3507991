"""``minivl exercises``: hand out the homework.

    minivl exercises init DIR     the stub files (one per part of the lecture) and a pytest file
    minivl exercises list         the exercises, their slides and files
    minivl exercises show NAME    one exercise's stub (signature and docstring)
"""

from __future__ import annotations

import sys


def _init(args):
    from minivl.exercises.student import write_homework

    written = write_homework(args.dir, overwrite=args.force)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"nothing written: the files exist in {args.dir} (use --force to overwrite them)")
    print(f"next: fill in the stubs, then `cd {args.dir} && pytest -m ex_softmax` (or `pytest` for all)")
    return 0


def _list(args):
    from minivl.exercises import EXERCISES

    for name, ex in EXERCISES.items():
        print(f"{name:>20}  {ex.slide}  {ex.part}.py  {ex.title}")
    return 0


def _show(args):
    from minivl.exercises import get

    try:
        print(get(args.name).stub.strip("\n"))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def register(subparsers):
    p = subparsers.add_parser("exercises", help="homework: write the stub files, list or show the exercises")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="write the stub files and a pytest file into DIR")
    init.add_argument("dir")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(func=_init)
    sub.add_parser("list", help="the exercises").set_defaults(func=_list)
    show = sub.add_parser("show", help="one exercise's stub")
    show.add_argument("name")
    show.set_defaults(func=_show)
