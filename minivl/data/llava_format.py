"""LLaVA's conversation template and label mask (lecture S30, S31, S35).

One training sequence is a system line, then rounds of ``USER: ...`` and
``ASSISTANT: ...<end of turn>`` (Vicuna v1's template, LLaVA Table 2). The
first user turn holds the ``<image>`` placeholder, before its instruction
(as below) or after it (``image_position="after"``); the formatter
expands it into ``num_image_tokens`` copies, one per projected patch, which
the model overwrites with the projector's outputs
(``minivl/models/llava.py::LLaVA``)::

    A chat about one picture.
    USER: <image>x9
    What colour is the circle?
    ASSISTANT: The circle is red.</s>
    USER: Is there a square?
    ASSISTANT: No, there is no square in the image.</s>

The labels are aligned with the ids (the model shifts them by one itself):
-100 on the system line, every instruction and role word, every image
position and the padding; the assistant's answer tokens and the ``</s>``
that closes each answer keep their own id. The model learns to answer and to
stop, never to write the user's side.

The text is tokenized piece by piece (each piece starts with its own space or
newline), so the boundary between a role word and an answer is a token
boundary and the mask is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100
IMAGE = "<image>"
END = "</s>"  # LLaVA's end of turn (Vicuna's end of sequence)
PAD = "[PAD]"
EOT = "<|endoftext|>"
SPECIAL_TOKENS = (EOT, IMAGE, END, PAD)
SYSTEM = "A chat about one picture."
USER, ASSISTANT = "USER:", "ASSISTANT:"


@dataclass
class Formatted:
    """One formatted conversation: ``ids`` and ``labels`` (T,), and each token's piece kind."""

    ids: np.ndarray
    labels: np.ndarray
    kinds: list[str]  # "system", "role", "image", "scene", "instruction", "answer", "end"

    def __len__(self):
        return len(self.ids)


def pieces(turns, image=True, system=SYSTEM, image_position="before", scene_text=None):
    """The conversation as ``(text, kind)`` pieces, in order; ``kind`` says how it is labelled.

    ``image_position``: the ``<image>`` placeholder goes "before" the first
    instruction (``<image>\nquestion``) or "after" it (``question\n<image>``);
    LLaVA-Instruct places it either way at random.
    ``scene_text``: the scene in words, written (kind ``"scene"``, never
    supervised) exactly where the placeholder would go (``image`` must be
    True): the reader documents a Vicuna stand-in is pretrained on
    (``minivl/data/llava_data.py::reader_documents``).
    """
    if scene_text is not None and not image:
        raise ValueError("scene_text stands where the image goes: it needs image=True")
    place = (IMAGE, "image") if scene_text is None else (" " + scene_text, "scene")
    if image_position not in ("before", "after"):
        raise ValueError(f"image_position must be 'before' or 'after', got {image_position!r}")
    out = [(system, "system")]
    for r, (instruction, answer) in enumerate(turns):
        out.append(("\n" + USER, "role"))
        if r == 0 and image and image_position == "before":
            out += [(" ", "role"), place, ("\n" + instruction, "instruction")]
        elif r == 0 and image:
            out += [(" " + instruction, "instruction"), ("\n", "role"), place]
        else:
            out.append((" " + instruction, "instruction"))
        out.append(("\n" + ASSISTANT, "role"))
        if answer is not None:
            out.append((" " + answer, "answer"))
            out.append((END, "end"))
    return out


def format_conversation(tokenizer, turns, num_image_tokens=0, image=True, system=SYSTEM,
                        image_position="before", scene_text=None) -> Formatted:
    """Ids and labels of ``turns`` (``(instruction, answer)`` pairs) in LLaVA's template.

    ``image``: put the ``<image>`` placeholder (expanded to ``num_image_tokens``
    ids) before or after (``image_position``) the first instruction; ``False``
    writes the same conversation without it (the text-only baseline). A last
    turn whose answer is ``None`` ends at ``ASSISTANT:``: the prompt for generation.
    ``scene_text``: words in the placeholder's place instead of image positions (``pieces``).
    """
    if image and scene_text is None and num_image_tokens < 1:
        raise ValueError(f"num_image_tokens must be >= 1 when image=True, got {num_image_tokens}")
    special = tokenizer.special_tokens
    ids, labels, kinds = [], [], []
    for text, kind in pieces(turns, image, system, image_position, scene_text):
        if kind == "image":
            piece = [special[IMAGE]] * num_image_tokens
        elif kind == "end":
            piece = [special[END]]
        else:
            piece = tokenizer.encode(text)
        ids += piece
        kinds += [kind] * len(piece)
        labels += piece if kind in ("answer", "end") else [IGNORE] * len(piece)
    return Formatted(np.array(ids, np.int64), np.array(labels, np.int64), kinds)


def pad_batch(items: list[Formatted], pad_id: int):
    """Right-pad to the longest: ``(ids (B, T), labels (B, T))``; padding is labelled -100.

    Right padding under a causal mask needs no key-padding mask: a real token
    never attends to a later position, so never to a pad.
    """
    T = max(len(x) for x in items)
    ids = np.full((len(items), T), pad_id, np.int64)
    labels = np.full((len(items), T), IGNORE, np.int64)
    for i, x in enumerate(items):
        ids[i, : len(x)], labels[i, : len(x)] = x.ids, x.labels
    return ids, labels
