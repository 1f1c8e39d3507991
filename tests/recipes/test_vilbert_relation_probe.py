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


def test_attention_on_reads_the_referents_column_after_img():
    from minivl.recipes.vilbert_relation_probe import attention_on

    m = np.array([[0.1, 0.6, 0.3, 0.0],   # target 0 -> token 1: the most
                  [0.2, 0.1, 0.3, 0.4],   # target 2 -> token 3: the most
                  [0.5, 0.1, 0.4, 0.0]])  # target 1 -> token 2: not the most ([IMG] is)
    (out,) = attention_on([m], [0, 2, 1], [2, 3, 2])
    assert out["weight_on_referent"] == np.mean([0.6, 0.4, 0.4])
    assert out["referent_gets_most"] == 2 / 3
    assert out["uniform_weight"] == np.mean([1 / 3, 1 / 4, 1 / 3])


def test_text_states_picks_each_words_state_and_its_attention_over_the_regions():
    from minivl.data.corpus import build_corpus
    from minivl.models.vilbert import ViLBERT, ViLBERTConfig
    from minivl.random import manual_seed
    from minivl.recipes.vilbert_relation_probe import text_states
    from tests.data.test_vilbert_tasks import OneHotRegions

    tokenizer = build_corpus(seed=0).tokenizer
    scenes = ShapesWorld(image_size=32, max_objects=3, seed=0).iid_scenes(40, "val", rng=np.random.default_rng(0))
    items = relation_items(scenes, np.random.default_rng(1))[:6]
    regions = OneHotRegions().encode(None, [scenes[it["scene"]] for it in items])
    manual_seed(0)
    model = ViLBERT(ViLBERTConfig(vocab_size=tokenizer.vocab_size, max_len=64, text_dim=16, text_heads=2,
                                  text_mlp_dim=32, feat_dim=OneHotRegions.dim, visual_dim=12, visual_heads=2,
                                  visual_mlp_dim=24, co_dim=8, co_heads=2, pool_dim=8, dropout=0.0)).eval()
    texts, at = [it["text"] for it in items], [it["a_word"] for it in items]
    words, visual, maps = text_states(model, tokenizer, texts, at, regions, chunk=4, attention=True)
    assert words.shape == (6, 16) and visual.shape[:2] == regions.mask.shape and len(maps) == 2
    for m in maps:
        assert m.shape == regions.mask.shape
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-5)
        assert np.all(m[~regions.mask] == 0)
    # the state of text 3's shape word, by hand: the right row and token were picked, in any chunk
    from minivl.data.vilbert_tasks import encode_text

    ids, starts = encode_text(tokenizer, texts[3])
    assert tokenizer.decode([ids[starts[at[3]]]]).strip() == split_words(texts[3])[at[3]]
    r = regions[3]
    state = model.encode(np.asarray([ids]), np.ones((1, len(ids)), bool), r.feats, r.locs, r.mask).text.numpy()
    np.testing.assert_allclose(words[3], state[0, starts[at[3]]], atol=1e-5)
