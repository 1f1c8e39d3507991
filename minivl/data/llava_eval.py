"""How LLaVA's answers are judged on held-out scenes (lecture S36), by the
same rules the teacher writes with (``minivl/data/instructions.py``).

* short answers: a question of a given type is asked in a one-round prompt;
  the generated sentence is compared with the teacher's sentence for every
  possible answer ("There are two circles in the image.", "... three ...");
  the answer whose sentence it is exactly is the model's answer, and no
  match counts as wrong. So a reply is right only if it says the right thing
  in the teacher's words.
* detailed descriptions: every ``"A <size> <colour> <shape> is ..."``
  sentence names one object; the named (size, colour, shape) triples are
  matched against the scene's objects (as multisets) for precision, recall
  and F1; ``_located`` also requires the grid position ("in the top left").
* complex reasoning: the teacher's answer to the same question is unique
  (the rules decide it from the scene), so a reply is right when it is that
  answer, word for word.
* captions (stage 1's own task, S34): the reply to the stage-1 instruction;
  every "[size] colour shape" phrase it names must fit its own object of the
  scene (``caption_phrases``, ``caption_hits``): the precision of the named
  objects. A caption need not name every object, so there is no recall.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from minivl.data.instructions import _answer_sentence, _where
from minivl.data.language import NUMBER_WORDS, SIZE_WORDS, Description
from minivl.data.shapes import COLOURS, SHAPES, SIZES
from minivl.data.vqa import _ANSWER_SETS

EVAL_TYPES = ("exist", "count", "colour", "shape", "relation")
_SIZE_OF = {w: i for i, words in enumerate(SIZE_WORDS) for w in words}
_WORDS = {k: "|".join(v) for k, v in (("size", _SIZE_OF), ("colour", COLOURS), ("shape", SHAPES))}
_PHRASE = re.compile(r"\b(?:({size}) )?({colour}) ({shape})\b".format(**_WORDS))
_OBJECT = re.compile(r"(?:^|\. )A (\w+) (\w+) (\w+) is (in the centre|in the \w+ \w+|on the \w+|at the \w+)")


def question_type(question: str) -> str:
    """The VQA type of a teacher question, read from its words."""
    q = question.lower()
    if q.startswith("how many"):
        return "count"
    if "colour" in q:
        return "colour"
    if q.startswith("what shape"):
        return "shape"
    if q.startswith("what size") or "small or large" in q:
        return "size"
    if q.startswith(("is there", "are there")):
        return "exist"
    return "relation"


def short_answer(question, reply: str):
    """The answer a reply gives to ``question`` (a ``minivl.data.vqa.Question``), or None."""
    options = NUMBER_WORDS if question.qtype == "count" else _ANSWER_SETS[question.qtype]
    reply = reply.strip()
    for option in options:
        if _answer_sentence(replace(question, answer=option)) == reply:
            return option
    return None


def described_objects(text: str, located=False) -> Counter:
    """The (size, colour, shape[, where]) of every object a description names."""
    out = Counter()
    for size, colour, shape, where in _OBJECT.findall(text):
        if size in SIZES and colour in COLOURS and shape in SHAPES:
            out[(size, colour, shape, where) if located else (size, colour, shape)] += 1
    return out


def true_objects(scene, located=False) -> Counter:
    out = Counter()
    for o in scene.objects:
        key = (SIZES[o.size], COLOURS[o.colour], SHAPES[o.shape])
        out[key + (_where(o, scene.image_size),) if located else key] += 1
    return out


def prf(pairs) -> dict:
    """Micro precision, recall and F1 over ``(predicted Counter, true Counter)`` pairs."""
    hit = pred = true = 0
    for p, t in pairs:
        hit += sum((p & t).values())
        pred += sum(p.values())
        true += sum(t.values())
    precision = hit / pred if pred else 0.0
    recall = hit / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def caption_phrases(text: str) -> list[Description]:
    """Every "[size] colour shape" phrase of a caption ("a big red circle left of a blue ring")."""
    return [Description(shape=SHAPES.index(shape), colour=COLOURS.index(colour),
                        size=_SIZE_OF[size] if size else None)
            for size, colour, shape in _PHRASE.findall(text.lower())]


def caption_hits(phrases, scene) -> int:
    """How many of ``phrases`` can each be given their own object of ``scene`` that they fit
    (the largest such matching, by backtracking: a caption names a handful)."""
    def best(k, used):
        if k == len(phrases):
            return 0
        skip = best(k + 1, used)
        fits = [best(k + 1, used | {i}) + 1 for i in phrases[k].select(scene) if i not in used]
        return max([skip] + fits)

    return best(0, frozenset())
