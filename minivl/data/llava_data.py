"""LLaVA's data on the shapes world: scenes, the language model's plain text,
stage-1 caption pairs and stage-2 instructions, with their statistics
(lecture S32-S35).

* scenes: 48 x 48 pictures whose objects sit in a 3 x 3 grid of cells, the
  layout minivl's CLIP was trained on, so each of the N = 9 patch tokens of
  its image tower sees at most one whole object. Training and held-out scenes
  come from different seeds.
* the language model's pretraining text (standing in for Vicuna's): captions,
  and the teacher's questions and answers written as plain text (no image,
  no template), or the same in the chat template (``chat_documents``), or in
  the template with the scene stated in words where the image goes
  (``reader_documents``: a language model that must read its prompt);
* stage 1 (S34): ``<image>`` + one caption, the answer being the caption;
* stage 2 (S35): the teacher's conversations, detailed descriptions and
  complex reasoning (``minivl/data/instructions.py``), in the template of
  ``minivl/data/llava_format.py``; optionally also ``short_questions``,
  one-round questions answered in the teacher's sentence (what LLaVA-1.5 adds
  to the mix with its academic VQA data, Liu et al. 2023b, Table 7).

``statistics`` counts what a data set holds: kinds, turns, lengths, question
types, as the paper's Table 1 does for LLaVA-Instruct-158K.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from minivl.data.captions import sample_caption
from minivl.data.instructions import INSTRUCTION_KINDS, Instruction, _a, _where, make_instruction
from minivl.data.language import join_list
from minivl.data.llava_format import SPECIAL_TOKENS, SYSTEM, Formatted, format_conversation, pieces
from minivl.data.render import render
from minivl.data.shapes import sample_scenes
from minivl.tokenizers import train_bpe

IMAGE_SIZE, GRID = 48, 3


def llava_scenes(n, seed, max_objects=3):
    """``n`` grid scenes (seeded) and their pictures ``(n, 48, 48, 3)`` uint8."""
    rng = np.random.default_rng([seed, 29])
    scenes = sample_scenes(n, rng, image_size=IMAGE_SIZE, max_objects=max_objects, split="train",
                           grid=GRID)
    return scenes, render(scenes)


def instructions(scenes, seed, kinds=INSTRUCTION_KINDS, conversations=1) -> list[Instruction]:
    """One sample of every kind in ``kinds`` per scene (when the scene allows it).

    ``conversations``: how many conversation samples each scene gets (the
    weight of the short answers in the mix; LLaVA-Instruct-158K holds 58K
    conversations, 23K descriptions and 77K reasoning samples). The first
    ones are those of ``conversations=1``; the others come from their own
    random stream, so raising it only adds samples.
    """
    if conversations < 0:
        raise ValueError(f"conversations must be >= 0, got {conversations}")
    rng = np.random.default_rng([seed, 31])
    out = []
    for i, scene in enumerate(scenes):
        for kind in kinds:
            item = make_instruction(scene, i, kind, rng)
            if item is not None and (kind != "conversation" or conversations >= 1):
                out.append(item)
    if "conversation" in kinds and conversations > 1:
        more = np.random.default_rng([seed, 31, 2])
        for i, scene in enumerate(scenes):
            for _ in range(conversations - 1):
                item = make_instruction(scene, i, "conversation", more)
                if item is not None:
                    out.append(item)
    return out


SHORT_TYPES = ("exist", "count", "colour", "shape", "relation")  # the evaluation's types (llava_eval.EVAL_TYPES)


def short_questions(scenes, seed, per_scene=1, types=SHORT_TYPES) -> list[Instruction]:
    """``per_scene`` one-round samples of kind ``"short"`` per scene: one question of a type drawn
    uniformly from ``types``, answered in the teacher's sentence (as in its conversations).

    LLaVA-1.5 adds short-answer VQA data (VQAv2, GQA: the training splits of
    the benchmarks it reports) to LLaVA-Instruct; these are our world's
    equivalent, written on the training scenes only.
    """
    from minivl.data.instructions import _answer_sentence, _sentence
    from minivl.data.vqa import ask

    if per_scene < 0:
        raise ValueError(f"per_scene must be >= 0, got {per_scene}")
    rng = np.random.default_rng([seed, 31, 3])
    out = []
    for i, scene in enumerate(scenes):
        for _ in range(per_scene):
            q = ask(scene, str(rng.choice(list(types))), rng)
            if q is not None:
                out.append(Instruction("short", ((_sentence(q.text), _answer_sentence(q)),), i))
    return out


def caption_pairs(scenes, seed) -> list[tuple[int, str]]:
    """Stage 1: one ``(scene index, caption)`` per scene."""
    rng = np.random.default_rng([seed, 34])
    return [(i, sample_caption(s, rng).text) for i, s in enumerate(scenes)]


STAGE1_INSTRUCTION = "Write a short caption for the image."


def stage1_turns(caption: str):
    """``<image>`` + caption: the instruction is fixed, the caption is the answer."""
    return [(STAGE1_INSTRUCTION, caption[0].upper() + caption[1:])]


def plain_text(items: list[Instruction], captions) -> list[tuple[str, str]]:
    """The language model's pretraining documents: ``(instruction, response)`` pairs and captions."""
    docs = [(q, a) for item in items for q, a in item.turns]
    docs += [(STAGE1_INSTRUCTION, c) for _, c in captions]
    return docs


def chat_documents(tokenizer, items: list[Instruction], captions) -> list[np.ndarray]:
    """The same text as ``plain_text`` in the chat template, without the image: the ids of every
    instruction sample and of every stage-1 pair (``format_conversation(..., image=False)``).

    Vicuna, the language model LLaVA starts from, is a chat model: it has read
    conversations in this template before it ever sees an image. A GPT
    pretrained on these documents knows where an answer starts and that
    ``</s>`` ends it, so stage 1 can align the projector to it.
    """
    docs = [format_conversation(tokenizer, it.turns, image=False).ids for it in items]
    docs += [format_conversation(tokenizer, stage1_turns(c), image=False).ids for _, c in captions]
    return docs


def reading_order(scene):
    """The scene's objects row by row, left to right (by the cell of their centre): the order of
    the eye's patch tokens on the 3 x 3 grid."""
    cell = lambda o: (int(GRID * o.centre[1] / scene.image_size), int(GRID * o.centre[0] / scene.image_size))
    return sorted(scene.objects, key=cell)


def scene_words(scene) -> str:
    """The scene in words, every object in reading order with its size, colour, shape and cell:
    "a large red ring in the top left and a small blue cross in the centre"."""
    return join_list([f"{_a(o)} {_where(o, scene.image_size)}" for o in reading_order(scene)])


def reader_documents(tokenizer, items: list[Instruction], captions, scenes, image_position="after"
                     ) -> list[np.ndarray]:
    """The teacher's samples and the stage-1 pairs in the chat template, the first user turn
    stating the scene in words (``scene_words``) exactly where the ``<image>`` placeholder goes
    (``image_position``), and the assistant answering as the teacher did.

    Vicuna reads its context: what it answers depends on what the prompt says.
    In the plain or chat documents the answer never depends on the prompt
    beyond the question, so a GPT pretrained on them ignores what stands where
    the image goes, and stage 1's projector has nothing to speak to. Here every
    answer (a caption, a short answer, a description, a reasoning step) is
    right only for the scene the prompt describes, so the GPT must read the
    words the projector is later asked to stand in for. ``scenes`` are the
    items' own scenes (``item.scene_index`` indexes them): the training scenes,
    never held-out ones. No document lacks the description: one that did would
    teach the GPT to answer from its prior, the habit this text is meant to break.
    """
    doc = lambda i, turns: format_conversation(tokenizer, turns, image=True, image_position=image_position,
                                               scene_text=scene_words(scenes[i])).ids
    return [doc(it.scene_index, it.turns) for it in items] + [doc(i, stage1_turns(c)) for i, c in captions]


def make_tokenizer(items, captions, vocab_size=480):
    """A byte-level BPE over the template words and every text, with LLaVA's special tokens."""
    lines = [SYSTEM, "USER: ASSISTANT:"] + [" ".join(d) for d in plain_text(items, captions)]
    return train_bpe("\n".join(lines), vocab_size, special_tokens=SPECIAL_TOKENS)


@dataclass
class LLaVAExample:
    scene_index: int
    kind: str  # "caption" or an instruction kind
    formatted: Formatted


def format_items(tokenizer, items, num_image_tokens, image=True, image_position="before"
                 ) -> list[LLaVAExample]:
    """Stage-2 examples (``image=False``: the text-only baseline's)."""
    return [LLaVAExample(it.scene_index, it.kind,
                         format_conversation(tokenizer, it.turns, num_image_tokens, image,
                                             image_position=image_position))
            for it in items]


def format_captions(tokenizer, captions, num_image_tokens, image=True, image_position="before"
                    ) -> list[LLaVAExample]:
    return [LLaVAExample(i, "caption", format_conversation(tokenizer, stage1_turns(c), num_image_tokens,
                                                           image, image_position=image_position))
            for i, c in captions]


def statistics(items: list[Instruction], examples: list[LLaVAExample] | None = None) -> dict:
    """Kinds, turns per sample, words per instruction and response, question types."""
    from minivl.data.llava_eval import question_type

    kinds = Counter(it.kind for it in items)
    turns = [len(it.turns) for it in items]
    q_words = [len(q.split()) for it in items for q, _ in it.turns]
    a_words = [len(a.split()) for it in items for _, a in it.turns]
    qtypes = Counter(question_type(q) for it in items if it.kind in ("conversation", "short") for q, _ in it.turns)
    out = {"samples": len(items), "kinds": dict(kinds), "turns": sum(turns),
           "turns_per_sample": round(float(np.mean(turns)), 2),
           "instruction_words_mean": round(float(np.mean(q_words)), 1),
           "response_words_mean": round(float(np.mean(a_words)), 1),
           "response_words_max": int(max(a_words)), "question_types": dict(qtypes)}
    if examples:
        lengths = [len(e.formatted) for e in examples]
        out["tokens_mean"] = round(float(np.mean(lengths)), 1)
        out["tokens_max"] = int(max(lengths))
        out["supervised_fraction"] = round(float(np.mean(
            [np.mean(e.formatted.labels != -100) for e in examples])), 3)
    return out


__all__ = ["llava_scenes", "instructions", "short_questions", "caption_pairs", "plain_text", "chat_documents",
           "reading_order", "scene_words", "reader_documents", "make_tokenizer", "format_items", "format_captions",
           "statistics", "pieces"]
