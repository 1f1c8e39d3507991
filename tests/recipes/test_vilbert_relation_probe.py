"""The relation probe of issue 12 (minivl/recipes/vilbert_relation_probe.py): its items are
true captions with a false twin, its word positions point at the words they name, and the
centres are in the 5-d location's frame."""

from __future__ import annotations

import numpy as np

from minivl.data import ShapesWorld
from minivl.data.boxes import location_features
from minivl.data.captions import holds
from minivl.data.language import split_words
from minivl.data.shapes import COLOURS, SHAPES, relation_holds
from minivl.recipes.vilbert_relation_probe import SPATIAL, object_centres, relation_items


def _caption(text: str, scene):
    """Parse "a <colour> <shape> <rel...> a <colour> <shape>." back into a Caption to check it."""
    from minivl.data.captions import Caption
    from minivl.data.language import RELATION_WORDS, Description

    words = split_words(text)
    a = Description(SHAPES.index(words[2]), COLOURS.index(words[1]))
    b = Description(SHAPES.index(words[-2]), COLOURS.index(words[-3]))
    middle = " ".join(words[3:-4])
    (rel,) = [r for r, phrases in RELATION_WORDS.items() if middle in phrases]
    return Caption("relation", (a, b), rel)


def test_relation_items_are_true_with_false_twins_and_point_at_their_words():
    scenes = ShapesWorld(image_size=32, max_objects=3, seed=0).iid_scenes(300, "val", rng=np.random.default_rng(0))
    items = relation_items(scenes, np.random.default_rng(1))
    assert len(items) > 100
    assert {it["relation"] for it in items} == set(SPATIAL)
    for it in items:
        scene = scenes[it["scene"]]
        a, b = scene.objects[it["a"]], scene.objects[it["b"]]
        assert relation_holds(it["relation"], a, b)
        true, foil = _caption(it["text"], scene), _caption(it["foil"], scene)
        assert holds(true, scene) and not holds(foil, scene)
        assert true.phrases[0].select(scene) == [it["a"]] and true.phrases[1].select(scene) == [it["b"]]
        words, foil_words = split_words(it["text"]), split_words(it["foil"])
        assert words[it["a_word"]] == SHAPES[a.shape] and words[it["b_word"]] == SHAPES[b.shape]
        assert it["a_word"] < it["relation_word"] < it["b_word"]
        assert len(words) == len(foil_words)
        assert [k for k, (x, y) in enumerate(zip(words, foil_words)) if x != y] == [it["relation_word"]]


def test_object_centres_are_the_centres_of_the_location_boxes():
    scene = ShapesWorld(image_size=32, max_objects=3, seed=0).iid_scenes(5, "val", rng=np.random.default_rng(0))[0]
    locs = location_features(scene.boxes, scene.image_size)  # (K, 5) [x1, y1, x2, y2, area]
    for k in range(len(scene)):
        np.testing.assert_allclose(object_centres(scene, k), ((locs[k, 0] + locs[k, 2]) / 2,
                                                              (locs[k, 1] + locs[k, 3]) / 2), atol=1e-6)


def test_paired_probe_reads_a_direction_that_tells_true_from_foil_and_nothing_else():
    from minivl.recipes.vilbert_relation_probe import paired_probe

    rng = np.random.default_rng(0)
    n, d = 400, 6
    words = rng.integers(0, 4, n)  # the relation word of the true caption; the foil has its opposite
    onehot = np.eye(d)
    base = rng.standard_normal((n, d)) * 0.3
    true, foil = base + onehot[words], base + onehot[words ^ 1]
    assert 0.4 < paired_probe(true, foil) < 0.6  # the words alone say nothing of the truth
    true[:, 5] += 2.0  # a state that read the image: one direction says "true"
    assert paired_probe(true, foil) > 0.95
