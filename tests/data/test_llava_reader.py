"""The reader documents a Vicuna stand-in can be pretrained on (S34): the chat template with
each training scene stated in words exactly where its image goes, and the teacher's answers."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from minivl.data.llava_data import reader_documents, reading_order, scene_words, stage1_turns
from minivl.data.llava_eval import true_objects
from minivl.data.llava_format import END, IGNORE, IMAGE, format_conversation
from minivl.data.shapes import COLOURS, SHAPES, Scene, ShapeObject

_NAMED = re.compile(r"a (\w+) (\w+) (\w+) (in the centre|in the \w+ \w+|on the \w+|at the \w+)")


@pytest.fixture(scope="module")
def reader():
    from minivl.recipes.llava import LLaVAData

    return LLaVAData(n_train=40, n_test=40, seed=0, conversations=2, lm_text="reader", short_answers=2,
                     short_share=0.5, image_position="after")


def _samples(data):
    """Every document's (scene index, turns), in the order ``LLaVAData`` writes them."""
    return ([(it.scene_index, it.turns) for it in data.items + data.short_items]
            + [(i, stage1_turns(c)) for i, c in data.captions])


def test_scene_words_name_every_object_with_its_place():
    from minivl.data.llava_data import llava_scenes

    scenes, _ = llava_scenes(200, 5)
    for scene in scenes:
        named = Counter(_NAMED.findall(scene_words(scene)))
        assert named == true_objects(scene, located=True)


def test_objects_come_in_the_patch_tokens_reading_order():
    ring, cross = SHAPES.index("ring"), SHAPES.index("cross")
    red, blue = COLOURS.index("red"), COLOURS.index("blue")
    # the cross sits in the top right cell, the ring in the middle left one: row first, then column
    scene = Scene(48, (ShapeObject(ring, red, 1, (2, 18, 14, 30)), ShapeObject(cross, blue, 0, (36, 2, 46, 12))))
    assert reading_order(scene) == [scene.objects[1], scene.objects[0]]
    assert scene_words(scene) == "a small blue cross in the top right and a large red ring on the left"


def test_the_description_stands_exactly_where_the_image_goes(reader):
    tok, img = reader.tokenizer, reader.tokenizer.special_tokens[IMAGE]
    assert len(reader.docs) == len(_samples(reader))
    for doc, (i, turns) in list(zip(reader.docs, _samples(reader)))[::7]:
        words = tok.encode(" " + scene_words(reader.train_scenes[i]))
        with_image = format_conversation(tok, turns, 9, image_position="after").ids
        at = int(np.flatnonzero(with_image == img)[0])
        expected = np.concatenate([with_image[:at], words, with_image[at + 9:]])
        assert np.array_equal(doc, expected)
        assert img not in doc


def test_every_answer_is_the_teachers_and_nothing_else_is_supervised(reader):
    tok = reader.tokenizer
    for i, turns in _samples(reader)[::5]:
        f = format_conversation(tok, turns, image_position="after", scene_text=scene_words(reader.train_scenes[i]))
        assert "scene" in f.kinds
        assert all(lab == IGNORE for lab, k in zip(f.labels, f.kinds) if k == "scene")
        supervised = f.labels[f.labels != IGNORE].tolist()
        expected = []
        for _, answer in turns:
            expected += tok.encode(" " + answer) + [tok.special_tokens[END]]
        assert supervised == expected


def test_only_training_scenes_are_described(reader):
    """Every description is the one of its own training scene; no held-out scene's text enters."""
    tok = reader.tokenizer
    train_text = {scene_words(s) for s in reader.train_scenes}
    held_out_only = {scene_words(s) for s in reader.test_scenes} - train_text
    assert held_out_only  # the check below has something to find
    for doc, (i, _) in zip(reader.docs, _samples(reader)):
        text = tok.decode(doc.tolist())
        assert "\n " + scene_words(reader.train_scenes[i]) + "\nASSISTANT:" in text
        assert not any("\n " + h + "\nASSISTANT:" in text for h in held_out_only)


def test_scene_text_needs_the_image_slot(reader):
    with pytest.raises(ValueError, match="image=True"):
        format_conversation(reader.tokenizer, stage1_turns("a red ring."), image=False, scene_text="a red ring")
    assert reader_documents(reader.tokenizer, [], [], []) == []
