"""The teacher's seed examples (S32, minivl/data/llava_seeds.py): true of their scenes, in the
teacher's own words, and laid out as LLaVA's few-shot prompt."""

import numpy as np
import pytest

from minivl.data.captions import sample_caption
from minivl.data.instructions import INSTRUCTION_KINDS
from minivl.data.llava_data import llava_scenes
from minivl.data.llava_eval import described_objects, true_objects
from minivl.data.llava_seeds import SEEDS, symbolic_view, teacher_can_write, teacher_messages
from minivl.data.shapes import COLOURS, SHAPES


@pytest.mark.parametrize("kind", INSTRUCTION_KINDS)
def test_every_seed_turn_is_one_the_teacher_writes(kind):
    assert len(SEEDS[kind]) >= 2
    for seed in SEEDS[kind]:
        assert seed.kind == kind
        for turn in seed.turns:
            assert teacher_can_write(seed.scene, kind, turn), turn


def test_a_changed_word_is_not_the_teachers():
    seed = SEEDS["conversation"][0]
    q, a = seed.turns[0]
    assert not teacher_can_write(seed.scene, "conversation", (q, a.replace("one", "two")))
    assert not teacher_can_write(seed.scene, "conversation", (q, a.replace(".", "!")))


def test_detail_seeds_name_every_object_where_it_is():
    for seed in SEEDS["detail"]:
        text = seed.turns[0][1]
        assert described_objects(text, located=True) == true_objects(seed.scene, located=True)


def test_seed_captions_name_every_object_of_their_scenes():
    for seeds in SEEDS.values():
        for seed in seeds:
            words = " ".join(seed.captions)
            for o in seed.scene.objects:
                assert SHAPES[o.shape] in words and COLOURS[o.colour] in words


def test_symbolic_view_by_hand():
    seed = SEEDS["detail"][0]
    view = symbolic_view(seed.scene, ("a caption.",)).splitlines()
    assert view == ["Caption: a caption.",
                    "large red circle: [0.00, 0.00, 0.31, 0.31]",
                    "small blue square: [0.73, 0.73, 0.92, 0.92]"]


@pytest.mark.parametrize("kind", INSTRUCTION_KINDS)
def test_teacher_messages_are_system_then_seed_pairs_then_the_new_view(kind):
    scenes, _ = llava_scenes(1, seed=0)
    rng = np.random.default_rng(0)
    captions = [sample_caption(scenes[0], rng, ("list",)).text]
    messages = teacher_messages(scenes[0], captions, kind)
    roles = [m["role"] for m in messages]
    assert roles == ["system"] + ["user", "assistant"] * len(SEEDS[kind]) + ["user"]
    assert messages[-1]["content"] == symbolic_view(scenes[0], captions)
    for seed, answer in zip(SEEDS[kind], messages[2:-1:2]):
        for q, a in seed.turns:
            assert f"Question: {q}\nAnswer: {a}" in answer["content"]
    with pytest.raises(ValueError, match="kind"):
        teacher_messages(scenes[0], captions, "poem")
