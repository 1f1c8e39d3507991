"""LLaVA's template and label mask, token by token on a two-round example (S30, S31, S35),
and the judges of the S36 evaluation against the teacher's own writing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from minivl.data.llava_data import instructions, llava_scenes
from minivl.data.llava_eval import described_objects, prf, question_type, short_answer, true_objects
from minivl.data.llava_format import IGNORE, SPECIAL_TOKENS, format_conversation, pad_batch
from minivl.data.vqa import ask
from minivl.tokenizers import train_bpe

TURNS = [("What colour is the circle?", "The circle is red."),
         ("Is there a square?", "No, there is no square in the image.")]


@pytest.fixture(scope="module")
def tok():
    text = "A chat about one picture.\nUSER: ASSISTANT:\n" + " ".join(q + " " + a for q, a in TURNS)
    return train_bpe(text, 300, special_tokens=SPECIAL_TOKENS)


def test_two_rounds_token_by_token(tok):
    f = format_conversation(tok, TURNS, num_image_tokens=3)
    img, end = tok.special_tokens["<image>"], tok.special_tokens["</s>"]
    enc = tok.encode
    # the sequence, written out by hand piece by piece
    expected = [
        (enc("A chat about one picture."), False), (enc("\nUSER:"), False), (enc(" "), False),
        ([img] * 3, False), (enc("\nWhat colour is the circle?"), False), (enc("\nASSISTANT:"), False),
        (enc(" The circle is red."), True), ([end], True),
        (enc("\nUSER:"), False), (enc(" Is there a square?"), False), (enc("\nASSISTANT:"), False),
        (enc(" No, there is no square in the image."), True), ([end], True),
    ]
    ids = [t for piece, _ in expected for t in piece]
    labels = [t if learn else IGNORE for piece, learn in expected for t in piece]
    np.testing.assert_array_equal(f.ids, ids)
    np.testing.assert_array_equal(f.labels, labels)
    # read back: the supervised tokens are exactly the two answers and their end-of-turn tokens
    learned = f.labels[f.labels != IGNORE]
    assert tok.decode(learned) == " The circle is red.</s> No, there is no square in the image.</s>"
    assert tok.decode(f.ids).count("<image>") == 3
    assert all(lab == IGNORE for lab, k in zip(f.labels, f.kinds) if k in ("system", "role", "image",
                                                                          "instruction"))


def test_image_after_the_question(tok):
    """``question\n<image>``: the first instruction, then the image, then the answer; later
    rounds and the labels are those of the image-first template."""
    f = format_conversation(tok, TURNS, num_image_tokens=3, image_position="after")
    first = format_conversation(tok, TURNS, num_image_tokens=3)
    img, enc = tok.special_tokens["<image>"], tok.encode
    head = (enc("A chat about one picture.") + enc("\nUSER:") + enc(" What colour is the circle?")
            + enc("\n") + [img] * 3 + enc("\nASSISTANT:"))
    np.testing.assert_array_equal(f.ids[:len(head)], head)
    assert (f.labels[:len(head)] == IGNORE).all()
    first_head = (enc("A chat about one picture.") + enc("\nUSER:") + enc(" ") + [img] * 3
                  + enc("\nWhat colour is the circle?") + enc("\nASSISTANT:"))
    np.testing.assert_array_equal(f.ids[len(head):], first.ids[len(first_head):])
    np.testing.assert_array_equal(f.labels[f.labels != IGNORE], first.labels[first.labels != IGNORE])
    with pytest.raises(ValueError, match="image_position"):
        format_conversation(tok, TURNS, 3, image_position="middle")


def test_prompt_ends_at_assistant_and_text_only_has_no_image(tok):
    f = format_conversation(tok, [("Is there a square?", None)], 4)
    assert tok.decode(f.ids).endswith("\nASSISTANT:") and (f.labels == IGNORE).all()
    blind = format_conversation(tok, TURNS, 4, image=False)
    assert tok.special_tokens["<image>"] not in blind.ids
    assert tok.decode(blind.labels[blind.labels != IGNORE]) == tok.decode(
        format_conversation(tok, TURNS, 4).labels[format_conversation(tok, TURNS, 4).labels != IGNORE])
    with pytest.raises(ValueError, match="num_image_tokens"):
        format_conversation(tok, TURNS, 0)


def test_padding_is_ignored(tok):
    a, b = format_conversation(tok, TURNS[:1], 2), format_conversation(tok, TURNS, 2)
    ids, labels = pad_batch([a, b], pad_id=7)
    assert ids.shape == labels.shape == (2, len(b))
    assert (ids[0, len(a):] == 7).all() and (labels[0, len(a):] == IGNORE).all()
    np.testing.assert_array_equal(labels[1], b.labels)


def test_judges_agree_with_the_teacher_and_catch_errors():
    scenes, _ = llava_scenes(40, 3)
    rng = np.random.default_rng(0)
    from minivl.data.instructions import _answer_sentence

    for s in scenes:
        for qtype in ("exist", "count", "colour", "shape", "relation"):
            q = ask(s, qtype, rng)
            if q is None:
                continue
            assert question_type(q.text) == qtype
            assert short_answer(q, _answer_sentence(q)) == q.answer
            assert short_answer(q, _answer_sentence(q) + " Maybe.") is None
    details = [(it, scenes[it.scene_index]) for it in instructions(scenes, 0) if it.kind == "detail"]
    perfect = prf([(described_objects(it.turns[0][1], loc), true_objects(s, loc))
                   for it, s in details for loc in (False, True)])
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # one object's colour word changed in every description: precision and recall both drop
    def recolour(text):
        for c in ("red", "green", "blue", "yellow", "purple", "cyan"):
            if f" {c} " in text:
                return text.replace(f" {c} ", " red " if c != "red" else " blue ", 1)
        return text
    worse = prf([(described_objects(recolour(it.turns[0][1])), true_objects(s)) for it, s in details])
    assert worse["precision"] < 1 and worse["recall"] < 1
    # hand count: 2 named, 1 right, 3 true -> P 1/2, R 1/3, F1 2/5
    from collections import Counter
    p = Counter({("small", "red", "circle"): 1, ("large", "red", "circle"): 1})
    t = Counter({("small", "red", "circle"): 1, ("small", "blue", "ring"): 2})
    assert prf([(p, t)]) == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4})


def test_conversations_per_scene_only_add_conversations():
    scenes, _ = llava_scenes(30, 4)
    one, three, none = (instructions(scenes, 0, conversations=k) for k in (1, 3, 0))
    count = lambda items, kind: Counter(it.scene_index for it in items if it.kind == kind)
    # three conversation samples per scene (the teacher can always ask something), one of the rest
    assert set(count(three, "conversation").values()) == {3}
    assert count(three, "detail") == count(one, "detail") and count(three, "reasoning") == count(one, "reasoning")
    # conversations=1's samples come first and unchanged; 0 drops the conversations, nothing else
    assert three[: len(one)] == one
    assert none == [it for it in one if it.kind != "conversation"]
    # a scene's three conversations are (mostly) different questions, not copies
    turns = {}
    for it in three:
        if it.kind == "conversation":
            turns.setdefault(it.scene_index, set()).add(it.turns)
    assert sum(len(t) == 3 for t in turns.values()) > 0.8 * len(scenes)
    with pytest.raises(ValueError, match="conversations"):
        instructions(scenes, 0, conversations=-1)


def test_short_questions_are_one_round_of_the_named_types():
    from minivl.data.llava_data import SHORT_TYPES, short_questions

    scenes, _ = llava_scenes(60, 5)
    items = short_questions(scenes, 0, per_scene=3)
    assert all(it.kind == "short" and len(it.turns) == 1 for it in items)
    per_scene = Counter(it.scene_index for it in items)
    assert max(per_scene.values()) == 3 and len(items) > 0.9 * 3 * len(scenes)  # a one-object scene has no relation
    types = Counter(question_type(it.turns[0][0]) for it in items)
    assert set(types) == set(SHORT_TYPES) and min(types.values()) > 0.1 * len(items), types  # drawn uniformly
    only = short_questions(scenes, 0, per_scene=2, types=("exist",))
    assert {question_type(it.turns[0][0]) for it in only} == {"exist"} and len(only) == 2 * len(scenes)
    assert short_questions(scenes, 0, per_scene=0) == []
    with pytest.raises(ValueError, match="per_scene"):
        short_questions(scenes, 0, per_scene=-1)
