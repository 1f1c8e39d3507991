"""The student's side: read a solution file without running it, write a homework folder.

``load_function`` reads a ``.py`` file or a notebook (``.ipynb``, code cells)
and executes only its imports, function and class definitions and literal
constants: a training loop, a print or a plot at the top level of a
student's file never runs while it is graded. ``write_homework`` creates the
folder ``minivl exercises init DIR`` gives a student: one stub file per part
of the lecture and a pytest file with one marker per exercise.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from minivl.exercises import EXERCISES, PARTS


class StudentFileError(Exception):
    """A solution file that cannot be read: the message says why, for the student."""


def read_source(path) -> str:
    path = Path(path)
    if not path.exists():
        raise StudentFileError(f"{path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return text
    try:
        cells = json.loads(text)["cells"]
    except (ValueError, KeyError) as e:
        raise StudentFileError(f"{path} is not a readable notebook: {e}") from None
    code = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c.get("cell_type") == "code"]
    # IPython magics and shell lines are not Python
    return "\n\n".join("\n".join(line for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))
                       for cell in code)


def _kept(node) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        try:
            ast.literal_eval(node.value)
            return True
        except ValueError:
            return False
    return False


def load_functions(path) -> dict:
    """Every function the file defines, executing nothing but imports, definitions and literal constants."""
    source = read_source(path)
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise StudentFileError(f"{path}, line {e.lineno}: syntax error: {e.msg}") from None
    module = ast.Module(body=[n for n in tree.body if _kept(n)], type_ignores=[])
    namespace = {"__name__": "student_solution", "__file__": str(path)}
    try:
        exec(compile(module, str(path), "exec"), namespace)
    except Exception as e:  # noqa: BLE001 - an import or a decorator failing in the student's file
        raise StudentFileError(f"{path}: loading its imports and definitions raised {type(e).__name__}: {e}") from None
    return {k: v for k, v in namespace.items() if callable(v) and getattr(v, "__module__", None) == "student_solution"}


def load_function(path, name):
    functions = load_functions(path)
    if name not in functions:
        there = ", ".join(sorted(functions)) or "none"
        raise StudentFileError(f"{path} defines no function {name!r} (functions found: {there})")
    return functions[name]


# --------------------------------------------------------------------------- the homework folder

HEADER = '''"""{title}: exercises for minivl (fill in each function, then run `pytest -m ex_NAME`).

Check one exercise:   minivl check NAME {part}.py      (or pytest -m ex_NAME)
Check everything:     pytest
Only the functions below are run by the checker; other top-level code is skipped.
"""

import math

import numpy as np
'''

TEST_FILE = '''"""minivl's checker on the exercises of this folder: `pytest -m ex_softmax` for one, `pytest` for all."""

from pathlib import Path

import pytest

from minivl.exercises import check
from minivl.exercises.student import load_function

HERE = Path(__file__).resolve().parent

EXERCISES = {exercises!r}


def _grade(name):
    report = check(name, load_function(HERE / (EXERCISES[name] + ".py"), name), verbose=False)
    if not report.passed:
        pytest.fail(report.message, pytrace=False)

{tests}
'''


def stub_file(part: str) -> str:
    stubs = [ex.stub.strip("\n") for ex in EXERCISES.values() if ex.part == part]
    return HEADER.format(title=PARTS[part], part=part) + "\n\n" + "\n\n\n".join(stubs) + "\n"


def write_homework(folder, overwrite=False) -> list[Path]:
    """Create the student folder; never overwrite a file unless asked. Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {f"{part}.py": stub_file(part) for part in PARTS}
    tests = "\n".join(f"@pytest.mark.ex_{name}\ndef test_{name}():\n    _grade({name!r})\n\n"
                      for name in EXERCISES)
    files["test_exercises.py"] = TEST_FILE.format(exercises={n: ex.part for n, ex in EXERCISES.items()},
                                                  tests=tests.rstrip() + "\n")
    markers = "\n".join(f"    ex_{n}: {ex.title} (slide {ex.slide})" for n, ex in EXERCISES.items())
    files["pytest.ini"] = f"[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n{markers}\n"
    written = []
    for name, text in files.items():
        target = folder / name
        if target.exists() and not overwrite:
            continue
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def find_solution(folder, name):
    """The student's function for exercise ``name`` in ``folder``: its part's file first, then any other."""
    folder = Path(folder)
    part = EXERCISES[name].part
    candidates = [folder / f"{part}.py", folder / f"{part}.ipynb"]
    candidates += sorted(p for p in folder.iterdir() if p.suffix in (".py", ".ipynb") and p not in candidates
                         and not p.name.startswith("test_"))
    for path in candidates:
        if path.exists():
            try:
                functions = load_functions(path)
            except StudentFileError:
                continue
            if name in functions:
                return functions[name]
    return None
