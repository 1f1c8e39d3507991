"""The lecture notes never rot: every `path::symbol` pointer in lectures/*.md
names a file that exists and a symbol defined in it, and every slide ID of the
lecture index appears in the overview."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = sorted((ROOT / "lectures").glob("*.md"))
POINTER = re.compile(r"`([\w./-]+\.(?:py|md|cu|json))(?:::([^`]+))?`")


def pointers():
    for note in NOTES:
        for m in POINTER.finditer(note.read_text(encoding="utf-8")):
            yield note.name, m.group(1), m.group(2)


def symbol_defined(path: Path, symbol: str) -> bool:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md" or " " in symbol.strip():
        # a section: a heading (Markdown, or a notebook's markdown cell) containing the words
        return any(symbol.lower() in line.lower() for line in text.splitlines() if line.lstrip("# ").strip()
                   and line.lstrip().startswith(("#", "# #")))
    name = symbol.split(".")[-1].strip()
    pattern = rf"^\s*(def|class|async def)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*(:[^=]*)?=|__global__[^;{{]*\b{re.escape(name)}\b"
    return re.search(pattern, text, re.M) is not None


ALL = list(pointers())


def test_there_are_notes_and_pointers():
    assert (ROOT / "lectures" / "00-overview.md").exists()
    assert len(ALL) > 20


@pytest.mark.parametrize("note,path,symbol", ALL, ids=[f"{n}:{p}::{s}" for n, p, s in ALL])
def test_pointer_resolves(note, path, symbol):
    target = ROOT / path
    assert target.exists(), f"{note} points at {path}, which does not exist"
    if symbol:
        assert symbol_defined(target, symbol), f"{note}: {symbol!r} is not defined in {path}"


def test_every_slide_is_in_the_overview():
    text = (ROOT / "lectures" / "00-overview.md").read_text(encoding="utf-8")
    missing = [f"S{i:02d}" for i in range(1, 39) if f"| S{i:02d} |" not in text]
    assert not missing, f"slides missing from the overview: {missing}"
