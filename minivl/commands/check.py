"""``minivl check``: grade a student's solution of one exercise, or a whole folder, or a class.

    minivl check softmax solution.py            one exercise (a .py file or a notebook)
    minivl check --all DIR [--json]             every exercise in DIR, or one summary per student folder in DIR
    minivl check --list                         the exercises and their slides

The exit status is 0 when everything checked passed, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _one(args):
    from minivl.exercises import check, get
    from minivl.exercises.student import StudentFileError, load_function

    try:
        ex = get(args.exercise)
        fn = load_function(args.path, args.function or ex.name)
    except (ValueError, StudentFileError) as e:
        print(f"FAIL {args.exercise}: {e}", file=sys.stderr)
        return 1
    report = check(ex.name, fn, max_examples=args.examples, verbose=not args.json)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.passed else 1


def grade_folder(folder, max_examples=None) -> dict:
    """exercise -> status ("passed", "failed", "not written", "missing") and the message, for one student."""
    from minivl.exercises import EXERCISES, check
    from minivl.exercises.student import find_solution

    results = {}
    for name in EXERCISES:
        fn = find_solution(folder, name)
        if fn is None:
            results[name] = {"status": "missing", "message": f"no function {name} in {folder}"}
            continue
        report = check(name, fn, max_examples=max_examples, verbose=False)
        status = "passed" if report.passed else (
            "not written" if "NotImplementedError" in report.message.splitlines()[0] else "failed")
        results[name] = {"status": status, "message": report.message}
    return results


def _is_student_folder(folder: Path) -> bool:
    from minivl.exercises import PARTS

    return any((folder / f"{p}{s}").exists() for p in PARTS for s in (".py", ".ipynb"))


def _all(args):
    root = Path(args.all)
    if not root.is_dir():
        print(f"{root} is not a folder", file=sys.stderr)
        return 1
    students = [root] if _is_student_folder(root) else sorted(p for p in root.iterdir() if p.is_dir())
    summary = {}
    for folder in students:
        results = grade_folder(folder, args.examples)
        passed = sum(r["status"] == "passed" for r in results.values())
        summary[folder.name] = {"passed": passed, "total": len(results),
                                "exercises": {k: r["status"] for k, r in results.items()}}
        if not args.json:
            print(f"== {folder.name}: {passed}/{len(results)} passed")
            for name, r in results.items():
                print(f"   {r['status']:>12}  {name}")
                if args.verbose and r["status"] == "failed":
                    print("      " + r["message"].replace("\n", "\n      "))
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0 if all(s["passed"] == s["total"] for s in summary.values()) else 1


def _list(args):
    from minivl.exercises import EXERCISES

    for name, ex in EXERCISES.items():
        print(f"{name:>20}  {ex.slide}  {ex.part:<17} {ex.title}")
    return 0


def _run(args):
    if args.list:
        return _list(args)
    if args.all:
        return _all(args)
    if not args.exercise or not args.path:
        print("usage: minivl check EXERCISE PATH, minivl check --all DIR, or minivl check --list", file=sys.stderr)
        return 2
    return _one(args)


def register(subparsers):
    p = subparsers.add_parser("check", help="grade a homework exercise against minivl's reference")
    p.add_argument("exercise", nargs="?", help="exercise name (see --list)")
    p.add_argument("path", nargs="?", help="the student's .py file or notebook")
    p.add_argument("--function", help="the function's name in the file (default: the exercise's name)")
    p.add_argument("--all", metavar="DIR", help="grade every exercise in DIR, or every student folder in DIR")
    p.add_argument("--list", action="store_true", help="list the exercises")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--verbose", action="store_true", help="with --all: show the message of each failure")
    p.add_argument("--examples", type=int, default=None, help="inputs to draw per exercise (default: its own)")
    p.set_defaults(func=_run)
