"""Stage 1's own measure (S34, S36): the objects a caption names must be in the picture;
and the chat-template text a Vicuna stand-in can be pretrained on."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.data.captions import sample_caption
from minivl.data.corpus import lm_stream
from minivl.data.language import Description
from minivl.data.llava_data import chat_documents, llava_scenes
from minivl.data.llava_eval import caption_hits, caption_phrases
from minivl.data.llava_format import END, EOT, IMAGE, format_conversation
from minivl.data.shapes import COLOURS, SHAPES, Scene, ShapeObject


def test_true_captions_name_objects_that_are_there():
    scenes, _ = llava_scenes(150, 3)
    rng = np.random.default_rng(0)
    for scene in scenes:
        caption = sample_caption(scene, rng)
        phrases = caption_phrases(caption.text)
        if caption.kind == "count":  # "two circles": no colour, so nothing is named
            assert phrases == []
            continue
        assert phrases == list(caption.phrases)
        assert caption_hits(phrases, scene) == len(phrases)


def test_a_wrong_colour_is_not_a_hit():
    scenes, _ = llava_scenes(100, 4)
    rng = np.random.default_rng(1)
    for scene in scenes:
        caption = sample_caption(scene, rng, kinds=("list",))
        present = {o.colour for o in scene.objects}
        absent = next(c for c in range(len(COLOURS)) if c not in present)
        text = caption.text
        for c in present:
            text = text.replace(f" {COLOURS[c]} ", f" {COLOURS[absent]} ")
        assert caption_hits(caption_phrases(text), scene) == 0


def _scene(*objects):
    return Scene(48, tuple(ShapeObject(s, c, z, (16 * i, 0, 16 * i + 12, 12)) for i, (s, c, z) in enumerate(objects)))


def test_each_object_is_named_once_and_sizes_must_fit():
    circle, red = SHAPES.index("circle"), COLOURS.index("red")
    one_large_red_circle = _scene((circle, red, 1))
    assert caption_hits(caption_phrases("a red circle and a red circle."), one_large_red_circle) == 1
    assert caption_hits(caption_phrases("a big red circle."), one_large_red_circle) == 1
    assert caption_hits(caption_phrases("a little red circle."), one_large_red_circle) == 0
    assert caption_phrases("a big red circle") == [Description(shape=circle, colour=red, size=1)]


@pytest.fixture(scope="module")
def chat_data():
    from minivl.recipes.llava import LLaVAData

    return LLaVAData(n_train=30, n_test=5, seed=0, lm_text="chat")


def test_chat_documents_are_the_template_without_the_image(chat_data):
    tok = chat_data.tokenizer
    first = chat_data.items[0]
    assert np.array_equal(chat_data.docs[0], format_conversation(tok, first.turns, image=False).ids)
    assert len(chat_data.docs) == len(chat_data.items) + len(chat_data.captions)
    for doc in chat_data.docs:
        assert tok.special_tokens[IMAGE] not in doc
        assert doc[-1] == tok.special_tokens[END]
    assert chat_documents(tok, chat_data.items[:1], [])[0].tolist() == chat_data.docs[0].tolist()


def test_lm_stream_takes_encoded_documents_as_they_are(chat_data):
    tok, docs = chat_data.tokenizer, chat_data.docs[:2]
    eot = tok.special_tokens[EOT]
    expected = np.concatenate([docs[0], [eot], docs[1], [eot]])
    assert np.array_equal(lm_stream(docs, tok), expected)
    assert np.array_equal(lm_stream([("a red circle", "two")], tok), tok.encode("a red circle two") + [eot])
