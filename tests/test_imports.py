"""Python started in the repository root must still import the oracle
libraries: the top-level ``kernels/`` folder would otherwise shadow the PyPI
package ``kernels`` that transformers imports (see ``kernels/__init__.py``).

Each check runs in a fresh interpreter whose working directory is the
repository root, exactly as ``python -m pytest`` and ``jupyter`` start."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORACLES = ("torch", "transformers", "tiktoken", "safetensors")


def _run(code: str) -> subprocess.CompletedProcess:
    # "-c" puts the working directory first on sys.path, as "python -m pytest" does
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _need_oracles():
    missing = [m for m in ORACLES if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"oracle libraries not installed: {missing}")
    assert not missing, f"the test extra must install {missing}"


def test_repository_root_is_first_on_the_path_of_the_child():
    out = _run("import sys, os; print(os.path.abspath(sys.path[0] or os.curdir))")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == ROOT


def test_oracle_models_import_from_the_repository_root():
    _need_oracles()
    code = (
        "import minivl, minivl.kernels.reference\n"
        "import torch, tiktoken, safetensors.numpy, safetensors.torch\n"
        "from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel\n"
        "from transformers import ViTConfig, ViTModel, CLIPConfig, CLIPModel\n"
        "GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=8))\n"
        "print(minivl.kernels.reference.__name__)\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "minivl.kernels.reference"


def test_bare_kernels_is_never_this_folder():
    out = _run(
        "import os\n"
        "try:\n"
        "    import kernels\n"
        "except ModuleNotFoundError:\n"
        "    print('absent')\n"
        "else:\n"
        "    print(os.path.dirname(os.path.abspath(kernels.__file__)))\n"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() != str(ROOT / "kernels")


def test_minivl_kernels_is_this_folder():
    out = _run("import minivl.kernels as k, os; print(os.path.dirname(os.path.abspath(k.__file__)))")
    assert out.returncode == 0, out.stderr[-3000:]
    assert Path(out.stdout.strip()) == ROOT / "kernels"


def test_the_reference_kernels_import_without_the_autograd_engine():
    """``import minivl.kernels.reference`` runs ``minivl/__init__.py`` first; that
    file loads its names lazily, so only the package, the kernels folder and the
    reference itself come in (not the 32 modules of an eager ``import minivl``)."""
    out = _run(
        "import sys, minivl.kernels.reference\n"
        "print(sorted(m for m in sys.modules if m.startswith('minivl')))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['minivl',", "'minivl.kernels',", "'minivl.kernels.reference']"]


def test_the_lazy_package_still_offers_every_public_name():
    out = _run(
        "import minivl as mv, minivl.functional as F\n"
        "x = mv.tensor([1.0, 2.0], requires_grad=True)\n"  # the function, though minivl.tensor is loaded
        "F.softmax(x).sum().backward()\n"
        "assert isinstance(x, mv.Tensor) and mv.io.save is mv.save\n"
        "print(sorted(set(mv.__all__) - set(dir(mv))))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
