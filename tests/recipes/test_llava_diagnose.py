"""The diagnosis of LLaVA's short answers (S36): forced choice is the likeliest teacher
sentence as the model's own loss scores it; oracle features hold each cell's true attributes;
the caption measure leaves the other metrics as they were."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from minivl.data.instructions import _answer_sentence
from minivl.data.llava_data import llava_scenes
from minivl.data.llava_eval import question_type
from minivl.data.llava_format import format_conversation
from minivl.data.shapes import COLOURS, SHAPES
from minivl.data.vqa import ask
from minivl.recipes.llava import build, evaluate
from minivl.recipes.llava_diagnose import forced_choice, options, oracle_features, single_type_items


@pytest.fixture(scope="module")
def model_data(parts):
    data, clip, gpt = parts  # tests/recipes/conftest.py
    model = build(data, clip, gpt, image_position="after")
    data.compute_features(model)
    return model, data


@pytest.mark.parametrize("qtype", ["exist", "count", "colour"])
def test_forced_choice_is_the_option_with_the_lowest_summed_loss(model_data, qtype):
    model, data = model_data
    rng = np.random.default_rng(2)
    for i in range(4):
        q = ask(data.test_scenes[i], qtype, rng)
        feats = data.test_features[i]
        nll = []
        for option in options(q):
            text = q.text[0].upper() + q.text[1:]
            f = format_conversation(data.tokenizer, [(text, _answer_sentence(replace(q, answer=option)))],
                                    model.config.num_image_tokens, image_position="after")
            n_labelled = int((f.labels[1:] != -100).sum())
            nll.append(float(model.loss(feats[None], f.ids[None], f.labels[None]).item()) * n_labelled)
        assert forced_choice(model, data.tokenizer, q, feats) == options(q)[int(np.argmin(nll))]


def test_oracle_features_by_hand():
    scenes, _ = llava_scenes(5, 1)
    feats = oracle_features(scenes, 32)
    for scene, f in zip(scenes, feats):
        cells = set()
        for o in scene.objects:
            x, y = o.centre
            cell = min(int(3 * y / 48), 2) * 3 + min(int(3 * x / 48), 2)
            cells.add(cell)
            hot = np.flatnonzero(f[cell])
            assert hot.tolist() == [0, 1 + o.colour, 1 + len(COLOURS) + o.shape,
                                    1 + len(COLOURS) + len(SHAPES) + o.size]
        empty = [c for c in range(9) if c not in cells]
        assert not f[empty].any()
    with pytest.raises(ValueError, match="dim"):
        oracle_features(scenes, 8)


def test_single_type_items_hold_one_round_of_that_type():
    scenes, _ = llava_scenes(20, 2)
    items = single_type_items(scenes, "count", per_scene=2)
    assert len(items) == 40
    assert all(len(it.turns) == 1 and question_type(it.turns[0][0]) == "count" for it in items)


def test_caption_measure_leaves_the_other_metrics_as_they_were(model_data):
    model, data = model_data
    sizes = dict(n_per_type=2, n_describe=2, n_reason=2)
    without = evaluate(model, data, n_caption=0, **sizes)
    with_captions = evaluate(model, data, n_caption=3, **sizes)
    assert "caption_precision" not in without
    assert 0.0 <= with_captions.pop("caption_precision") <= 1.0
    with_captions.pop("caption_objects_named"), with_captions.pop("caption_example")
    assert with_captions == without
