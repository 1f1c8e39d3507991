"""The teacher's prompt with hand-written seed examples (lecture S32; LLaVA,
Liu et al. 2023, section 3 and its appendix prompts).

LLaVA never showed GPT-4 a picture. For each COCO image it sent a chat: a
system message saying what to write (a conversation, a detailed description
or a reasoning question and answer), then a few *seed examples* written by
hand, each a symbolic view of some image followed by the response wanted,
and last the new image's symbolic view. The seeds fix the tone: GPT-4
answers the new view the way the seeds answer theirs.

minivl's teacher (``minivl/data/instructions.py``) is a set of rules, not a
language model, so nothing here is sent anywhere. What this module keeps:

* ``symbolic_view``: what the teacher reads, written as LLaVA wrote it for
  GPT-4: captions, then one line per object with its box as fractions of
  the image side;
* ``SEEDS``: two hand-written examples per kind, each a scene, its
  captions and the response wanted;
* ``teacher_messages``: the chat LLaVA would send for a new scene
  (``[{"role": ..., "content": ...}, ...]``), to print on the slide;
* ``teacher_can_write``: whether the rule-based teacher writes a given turn
  for a scene (for some draw of its choices). The tests hold every seed to
  it, so the rules and the seeds keep one tone: change the teacher's wording
  and the seeds must change with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl.data.instructions import INSTRUCTION_KINDS, make_instruction
from minivl.data.language import check_kinds
from minivl.data.shapes import COLOURS, SHAPES, SIZES, Scene, ShapeObject

SYSTEM = {
    "conversation": (
        "You are an assistant looking at one picture of simple shapes on a black background. You "
        "are not given the picture: you are given its captions and every object's box, as "
        "fractions of the picture's side (x1, y1, x2, y2). Write a short conversation between a "
        "person asking about the picture and you answering as someone who sees it. Ask about "
        "counts, colours, shapes, sizes, whether something is there, and where things are. Answer "
        "in one plain sentence, only what the picture shows for certain."),
    "detail": (
        "You are an assistant looking at one picture of simple shapes on a black background, given "
        "as its captions and every object's box (fractions of the side: x1, y1, x2, y2). Describe "
        "the picture in detail as someone who sees it: how many shapes, each one's size, colour "
        "and shape and where it lies (a 3 x 3 grid: top left ... bottom right, centre), then how "
        "two of them stand to each other."),
    "reasoning": (
        "You are an assistant looking at one picture of simple shapes on a black background, given "
        "as its captions and every object's box (fractions of the side: x1, y1, x2, y2). Ask one "
        "question that needs a step of reasoning over several shapes (what is left if one goes, "
        "which colour is most common, which shape is nearest an edge, whether all colours are "
        "alike) and answer it, giving the reason."),
}  # fmt: skip


@dataclass(frozen=True)
class Seed:
    """One hand-written example: a scene, the captions the teacher is shown, the turns wanted."""

    kind: str
    scene: Scene
    captions: tuple[str, ...]
    turns: tuple[tuple[str, str], ...]


def symbolic_view(scene: Scene, captions) -> str:
    """The text a language-model teacher would read: captions, then objects and boxes."""
    side = scene.image_size
    lines = [f"Caption: {c}" for c in captions]
    for o in scene.objects:
        box = ", ".join(f"{v / side:.2f}" for v in o.box)
        lines.append(f"{SIZES[o.size]} {COLOURS[o.colour]} {SHAPES[o.shape]}: [{box}]")
    return "\n".join(lines)


def _obj(shape, colour, size, box) -> ShapeObject:
    return ShapeObject(SHAPES.index(shape), COLOURS.index(colour), SIZES.index(size), box)


# Two pictures the seeds are written about (48 px, objects inside the cells of a 3 x 3 grid,
# like minivl.data.llava_data.llava_scenes).
_TWO = Scene(48, (_obj("circle", "red", "large", (0, 0, 15, 15)),
                  _obj("square", "blue", "small", (35, 35, 44, 44))))
_THREE = Scene(48, (_obj("triangle", "yellow", "large", (16, 16, 31, 31)),
                    _obj("ring", "yellow", "small", (3, 19, 12, 28)),
                    _obj("diamond", "green", "large", (32, 0, 47, 15))))
_TWO_CAPTIONS = ("a large red circle and a small blue square.",
                 "a red circle is above a little blue square.", "one circle and one square.")
_THREE_CAPTIONS = ("a big yellow triangle, a small yellow ring and a green diamond.",
                   "a yellow ring is to the left of a yellow triangle.",
                   "one triangle, one ring and one diamond.")

SEEDS: dict[str, tuple[Seed, ...]] = {
    "conversation": (
        Seed("conversation", _TWO, _TWO_CAPTIONS, (
            ("How many squares are there?", "There is one square in the image."),
            ("What colour is the circle?", "The circle is red."),
            ("Are there any green diamonds?", "No, there is no green diamond in the image."))),
        Seed("conversation", _THREE, _THREE_CAPTIONS, (
            ("Are there any yellow shapes?", "Yes, there is at least one yellow shape in the image."),
            ("What shape is the green object?", "The green object is a diamond."),
            ("How many big green shapes are in the image?", "There is one large green shape in the image."))),
    ),
    "detail": (
        Seed("detail", _TWO, _TWO_CAPTIONS, (
            ("Describe the image in detail.",
             "The image shows two shapes on a black background. A large red circle is in the top "
             "left of the image. A small blue square is in the bottom right of the image. The "
             "circle is above the square."),)),
        Seed("detail", _THREE, _THREE_CAPTIONS, (
            ("Write a detailed description of the image.",
             "The image shows three shapes on a black background. A small yellow ring is on the "
             "left of the image. A large yellow triangle is in the centre of the image. A large "
             "green diamond is in the top right of the image. The ring is to the left of the "
             "triangle."),)),
    ),
    "reasoning": (
        Seed("reasoning", _TWO, _TWO_CAPTIONS, (
            ("If the square were taken away, how many shapes would be left?",
             "Removing the square leaves one shape: a large red circle."),)),
        Seed("reasoning", _THREE, _THREE_CAPTIONS, (
            ("Which colour appears most often in the image, and on how many shapes?",
             "Yellow appears most often: two of the three shapes are yellow (a large yellow "
             "triangle and a small yellow ring)."),)),
    ),
}  # fmt: skip


def teacher_messages(scene: Scene, captions, kind: str) -> list[dict]:
    """The chat LLaVA would send a language-model teacher for ``scene``: the system message
    of ``kind``, each seed as a (user: view, assistant: response) pair, then the new view."""
    check_kinds(kind, INSTRUCTION_KINDS, "instruction kind")
    messages = [{"role": "system", "content": SYSTEM[kind]}]
    for seed in SEEDS[kind]:
        messages.append({"role": "user", "content": symbolic_view(seed.scene, seed.captions)})
        response = "\n".join(f"Question: {q}\nAnswer: {a}" for q, a in seed.turns)
        messages.append({"role": "assistant", "content": response})
    messages.append({"role": "user", "content": symbolic_view(scene, captions)})
    return messages


def teacher_can_write(scene: Scene, kind: str, turn: tuple[str, str], draws: int = 200) -> bool:
    """Whether the rule-based teacher writes ``turn`` (instruction, response) for ``scene``
    in one of ``draws`` seeded draws of its choices."""
    for s in range(draws):
        item = make_instruction(scene, 0, kind, np.random.default_rng(s))
        if item is not None and turn in item.turns:
            return True
    return False


__all__ = ["SEEDS", "SYSTEM", "Seed", "symbolic_view", "teacher_can_write", "teacher_messages"]
