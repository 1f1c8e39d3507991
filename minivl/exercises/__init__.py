"""Homework: exercises a student solves in plain NumPy, graded against minivl.

Each exercise is a function signature with a docstring (the stub a student
fills in), minivl's own answer, and a property test that draws inputs the
student did not choose::

    from minivl.exercises import check
    check("softmax", my_softmax)       # prints PASS/FAIL with the smallest failing input and a hint

On the command line: ``minivl check softmax solution.py``, ``minivl exercises
list``, ``minivl exercises init DIR``. The teacher's notes are
``lectures/06-exercises.md``.
"""

from __future__ import annotations

from minivl.exercises import attention as _attention
from minivl.exercises import clip as _clip
from minivl.exercises import dalle as _dalle
from minivl.exercises import llava as _llava
from minivl.exercises import softmax as _softmax
from minivl.exercises import tokens as _tokens
from minivl.exercises import vilbert as _vilbert
from minivl.exercises import vit as _vit
from minivl.exercises.check import Exercise, Report
from minivl.exercises.check import check as _check

PARTS = {
    "ex0_transformers": "Part 0: BERT, GPT, ViT (softmax, attention, tokens, patches)",
    "ex1_vilbert": "Part 1: ViLBERT",
    "ex2_clip": "Part 2: CLIP",
    "ex3_dalle": "Part 3: DALL-E",
    "ex4_llava": "Part 4: LLaVA",
}

_MODULES = (_softmax, _attention, _tokens, _vit, _vilbert, _clip, _dalle, _llava)  # in lecture order
EXERCISES: dict[str, Exercise] = {ex.name: ex for mod in _MODULES for ex in mod.EXERCISES}


def get(name: str) -> Exercise:
    """The exercise called ``name``, or a ValueError listing the names there are."""
    try:
        return EXERCISES[name]
    except KeyError:
        raise ValueError(f"no exercise called {name!r}; there are: {', '.join(EXERCISES)}") from None


def check(name: str, fn, max_examples: int | None = None, verbose: bool = True) -> Report:
    """Grade the student's ``fn`` on exercise ``name``; prints and returns a ``Report``."""
    return _check(get(name), fn, max_examples=max_examples, verbose=verbose)


__all__ = ["EXERCISES", "PARTS", "Exercise", "Report", "check", "get"]
