"""The stage-1 diagnosis (S34): fixed-form captions list every object in reading order; the
table oracle gives one free prefix per size-colour-shape combination; the plain pairs
supervise the caption and its end only; a fit trains the projector and nothing else."""

from __future__ import annotations

import numpy as np

from minivl.data.llava_format import EOT, IGNORE, IMAGE, PAD
from minivl.data.shapes import COLOURS, SHAPES, SIZES, Scene, ShapeObject
from minivl.recipes.llava import build
from minivl.recipes.llava_stage1 import examples, fit, fixed_caption, table_features, with_projector


def obj(shape, colour, size, x, y):
    return ShapeObject(shape, colour, size, (x, y, x + 6, y + 6))


def test_fixed_caption_names_every_object_row_by_row_left_to_right():
    # centres: (35, 3) top right, (3, 19) middle left, (19, 3) top centre
    scene = Scene(48, (obj(0, 0, 1, 32, 0), obj(5, 2, 0, 0, 16), obj(1, 3, 0, 16, 0)))
    assert fixed_caption(scene) == "a small yellow square, a large red circle and a small blue ring."
    assert fixed_caption(Scene(48, (obj(2, 4, 1, 20, 20),))) == "a large purple triangle."


def test_table_features_are_one_free_prefix_per_combination():
    a, b = obj(3, 1, 0, 0, 0), obj(3, 1, 0, 30, 30)  # the same combination, two places
    c = obj(3, 2, 0, 0, 0)  # another colour
    f = table_features([Scene(48, (a,)), Scene(48, (b,)), Scene(48, (c,))])
    n_combos = len(SIZES) * len(COLOURS) * len(SHAPES)
    assert f.shape == (3, 9, n_combos * 9)
    assert (f.sum(-1) == 1).all()  # one column per cell
    np.testing.assert_array_equal(f[0], f[1])  # the same combination: the same nine vectors
    assert not (f[0] * f[2]).any()  # another combination: its own nine columns
    assert len({int(np.argmax(f[0, cell])) for cell in range(9)}) == 9  # every cell its own vector


def test_plain_pairs_supervise_the_caption_and_its_end_only(parts):
    data = parts[0]
    tok = data.tokenizer
    (ex,) = examples(tok, data.captions[:1], "plain")
    ids, labels = ex.formatted.ids, ex.formatted.labels
    assert (ids[:9] == tok.special_tokens[IMAGE]).all() and (labels[:9] == IGNORE).all()
    assert ids[-1] == tok.special_tokens[EOT] and labels[-1] == ids[-1]
    np.testing.assert_array_equal(labels[9:], ids[9:])
    assert tok.decode(ids[9:-1].tolist()).strip() == data.captions[0][1]


def test_fit_trains_the_swapped_projector_and_leaves_the_language_model_alone(parts):
    data, clip, gpt = parts
    model = with_projector(build(data, clip, gpt, image_position="after"), 4 * 9)
    lm_before = {k: np.array(v) for k, v in model.lm.state_dict().items()}
    w_before = np.array(model.projector.fc1.weight.numpy())
    exs = examples(data.tokenizer, data.captions[:4])
    feats = np.eye(36, dtype=np.float32).reshape(4, 9, 36)
    fit(model, exs, feats, data.tokenizer.special_tokens[PAD], steps=3, lr=1e-2, batch_size=2)
    assert model.config.vision_dim == 36
    assert not np.allclose(model.projector.fc1.weight.numpy(), w_before)
    for k, v in model.lm.state_dict().items():
        np.testing.assert_array_equal(np.array(v), lm_before[k], err_msg=k)
