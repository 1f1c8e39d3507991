"""The student's side: solution files are read without running their top-level
code, `minivl exercises init` writes stubs and a pytest file with one marker
per exercise, and `minivl check` grades one file, a folder or a class."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minivl.cli import main
from minivl.exercises import EXERCISES, PARTS
from minivl.exercises.student import StudentFileError, load_function, load_functions, stub_file, write_homework


def filled(part: str) -> str:
    """A solution file for a part: each stub's body replaced by a call into minivl's reference."""
    lines = ["from minivl.exercises import EXERCISES as _EX", ""]
    for name, ex in EXERCISES.items():
        if ex.part == part:
            args = ", ".join(ex.params)
            lines += [f"def {name}({args}):", f"    return _EX[{name!r}].reference({args})", ""]
    return "\n".join(lines)


def test_top_level_code_of_a_solution_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "sol.py"
    path.write_text(f"import numpy as np\nEPS = 1e-9\nopen({str(marker)!r}, 'w').write('x')\n"
                    "def softmax(x):\n    return np.exp(x) / np.exp(x).sum(-1, keepdims=True) + EPS * 0\n"
                    "print(softmax(np.ones(3)))\n")
    fn = load_function(path, "softmax")
    assert not marker.exists()
    assert fn.__name__ == "softmax" and "softmax" in load_functions(path)


def test_notebook_code_cells_are_read(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "source": "# hi"},
                    {"cell_type": "code", "source": ["%matplotlib inline\n", "import numpy as np\n"]},
                    {"cell_type": "code", "source": "def merge_heads(x):\n    return x\n"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "hw.ipynb"
    path.write_text(json.dumps(nb))
    assert load_function(path, "merge_heads")(3) == 3


@pytest.mark.parametrize("text,message", [
    ("def softmax(x):\n  return x +\n", "syntax error"),
    ("import not_a_module_anywhere\n", "ModuleNotFoundError"),
    ("def other(x):\n    return x\n", "defines no function 'softmax' (functions found: other)"),
])
def test_unreadable_solutions_give_a_message(tmp_path, text, message):
    path = tmp_path / "sol.py"
    path.write_text(text)
    with pytest.raises(StudentFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_function(path, "softmax")


def test_init_writes_stubs_markers_and_never_overwrites(tmp_path):
    written = write_homework(tmp_path)
    assert {p.name for p in written} == {f"{p}.py" for p in PARTS} | {"test_exercises.py", "pytest.ini"}
    for part in PARTS:
        functions = load_functions(tmp_path / f"{part}.py")
        assert {n for n, ex in EXERCISES.items() if ex.part == part} == set(functions)
    ini = (tmp_path / "pytest.ini").read_text()
    assert all(f"ex_{n}:" in ini for n in EXERCISES)
    (tmp_path / "ex2_clip.py").write_text("# my work\n")
    assert write_homework(tmp_path) == []
    assert (tmp_path / "ex2_clip.py").read_text() == "# my work\n"


def test_stub_files_hold_no_solution():
    for part in PARTS:
        text = stub_file(part)
        assert "reference" not in text and "minivl" not in text.split('"""', 2)[2]


def test_the_pytest_markers_run_one_exercise_each(tmp_path):
    write_homework(tmp_path)
    (tmp_path / "ex4_llava.py").write_text(filled("ex4_llava"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "ex_llava_labels or ex_softmax"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert "1 failed, 1 passed" in run.stdout, run.stdout + run.stderr
    assert "softmax raises NotImplementedError" in run.stdout


def test_check_command_one_exercise(tmp_path, capsys):
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(filled("ex0_transformers"))
    bad.write_text("import numpy as np\ndef causal_mask(nq, nk):\n    return np.tril(np.ones((nq, nk), bool))\n")
    assert main(["check", "causal_mask", str(good)]) == 0
    assert "PASS causal_mask" in capsys.readouterr().out
    assert main(["check", "causal_mask", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL causal_mask" in out and "hint (cache offset ignored)" in out
    assert main(["check", "causal_mask", str(tmp_path / "missing.py")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_check_all_grades_a_class_as_json(tmp_path, capsys):
    ada, bob = tmp_path / "ada", tmp_path / "bob"
    write_homework(ada)
    write_homework(bob)
    for part in PARTS:
        (ada / f"{part}.py").write_text(filled(part))
    (bob / "ex1_vilbert.py").write_text(filled("ex1_vilbert"))
    assert main(["check", "--all", str(tmp_path), "--json", "--examples", "10"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["ada"]["passed"] == summary["ada"]["total"] == len(EXERCISES)
    assert summary["bob"]["passed"] == 2
    assert summary["bob"]["exercises"]["softmax"] == "not written"
    assert summary["bob"]["exercises"]["co_attention"] == "passed"
