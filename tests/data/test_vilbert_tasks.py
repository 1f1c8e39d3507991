"""The ViLBERT transfer data (``minivl/data/vilbert_tasks.py``): every task's arrays have
the documented shapes, parts share no image, texts decode back to the generators' words,
and the targets agree with hand-checked items (IoU targets, the FOIL word, the four
retrieval candidates, VCR's passes)."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.data import ShapesWorld
from minivl.data.corpus import build_corpus
from minivl.data.foil import foil_items
from minivl.data.regions import RegionBatch
from minivl.data.shapes import N_CLASSES
from minivl.data.splits import scene_key
from minivl.data.vilbert_tasks import (
    PASSES,
    TASKS,
    build_split,
    encode_text,
    gather,
    make_task,
    refexp_targets,
)
from minivl.data.vqa import ANSWERS


class OneHotRegions:
    """A stand-in region encoder: each region's feature is its object's one-hot class and size
    (what a perfect detector would give), so tests run without training a detector."""

    dim = N_CLASSES + 2

    def encode(self, images, scenes, jitter=0.0, rng=None):
        B, R = len(scenes), max(len(s) for s in scenes)
        feats = np.zeros((B, 1 + R, self.dim), np.float32)
        mask = np.zeros((B, 1 + R), bool)
        boxes = np.zeros((B, R, 4), np.float32)
        labels = np.full((B, R), -1)
        for i, s in enumerate(scenes):
            k = len(s)
            feats[i, 1 + np.arange(k), s.class_ids] = 1
            feats[i, 1 + np.arange(k), N_CLASSES + s.sizes] = 1
            feats[i, 0] = feats[i, 1:1 + k].mean(0)
            mask[i, :1 + k], boxes[i, :k], labels[i, :k] = True, s.boxes, s.class_ids
        locs = np.zeros((B, 1 + R, 5), np.float32)
        locs[:, 1:, :4] = boxes / scenes[0].image_size
        locs[:, 0] = [0, 0, 1, 1, 1]
        return RegionBatch(feats, locs, mask, boxes, labels, np.zeros((B, 1 + R, N_CLASSES), np.float32),
                           "simulated")


@pytest.fixture(scope="module")
def tokenizer():
    return build_corpus(seed=0).tokenizer


@pytest.fixture(scope="module")
def tasks(tokenizer):
    world = ShapesWorld(seed=0)
    return {t: make_task(t, world, tokenizer, OneHotRegions(), sizes=(120, 40, 40)) for t in TASKS}


def test_every_task_has_the_documented_shapes(tasks):
    for task, parts in tasks.items():
        for part, split in parts.items():
            n, p = len(split), PASSES[task]
            assert n > 0 and split.part == part and split.task == task
            assert split.ids.shape[:2] == (n, p) and split.text_mask.shape == split.ids.shape
            assert split.images.shape == (n, p) and split.groups.shape == (n,)
            assert split.images.max() < len(split.scenes) == len(split.regions.feats)
            assert all(len(v) == n for v in split.targets.values())
            batch = gather(split, [0, n - 1])
            t = batch["ids"].shape[1]
            assert batch["ids"].shape == batch["text_mask"].shape == (2 * p, t)
            assert batch["text_mask"][:, 0].all() and batch["text_mask"].sum(1).max() == t  # trimmed
            assert batch["feats"].shape[:2] == batch["region_mask"].shape == batch["locs"].shape[:2]
            assert batch["feats"].shape[0] == 2 * p
            scenes = split.images[[0, n - 1]].reshape(-1)  # pass j of item b is row b * P + j
            np.testing.assert_array_equal(batch["feats"], split.regions.feats[scenes])
            np.testing.assert_array_equal(batch["ids"][p], split.ids[n - 1, 0, :t])


def test_parts_share_no_image(tasks):
    for parts in tasks.values():
        keys = {part: {scene_key(s, "scene") for s in split.scenes} for part, split in parts.items()}
        assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"]
        assert not keys["val"] & keys["test"]


def test_text_decodes_back_and_word_starts_point_at_words(tokenizer):
    text = "a red ring is left of a small blue square."
    ids, starts = encode_text(tokenizer, text)
    special = tokenizer.special_tokens
    assert ids[0] == special["[CLS]"] and ids[-1] == special["[SEP]"]
    assert tokenizer.decode(ids[1:-1]) == text
    assert [tokenizer.decode([ids[s]]).strip() for s in starts][:3] == ["a", "red", "ring"]
    pair, _ = encode_text(tokenizer, "how many circles?", "there are two circles.")
    assert pair.count(special["[SEP]"]) == 2


def test_refexp_targets_by_hand():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [1, 0, 11, 10], [4, 0, 14, 10], [0, 0, 10, 10]],
                     np.float32)
    mask = np.array([True, True, True, True, True, False])  # [IMG], four real regions, one padded
    # IoU with (0, 0, 10, 10): 1; 0; 90 / 110 = 0.818; 60 / 140 = 0.43 -> 0 (below 0.5); padding 0
    np.testing.assert_allclose(refexp_targets(boxes, mask, (0, 0, 10, 10)), [0, 1, 0, 90 / 110, 0, 0],
                               rtol=1e-6)


def test_refexp_true_region_is_the_target_object(tasks):
    split = tasks["refexp"]["train"]
    iou = split.targets["iou"]
    best = iou.argmax(1)
    np.testing.assert_array_equal(best - 1, split.targets["target"])  # region r is object r
    np.testing.assert_allclose(iou.max(1), 1.0)  # unjittered boxes: the true region is exact


def test_vqa_targets(tasks):
    split = tasks["vqa"]["train"]
    scores, answer = split.targets["scores"], split.targets["answer"]
    assert scores.shape == (len(split), len(ANSWERS))
    np.testing.assert_array_equal(scores[np.arange(len(split)), answer], 1.0)  # the truth always scores 1
    assert set(split.groups) <= {"count", "colour", "shape", "size", "exist", "relation"}


def test_foil_targets_point_at_the_swapped_word(tokenizer):
    scenes = ShapesWorld(seed=1).iid_scenes(60, "train")
    regions = OneHotRegions().encode(None, scenes)
    split = build_split("foil", scenes, "train", tokenizer, regions, np.random.default_rng(0))
    expected = {f.caption: f for f in foil_items(scenes, np.random.default_rng(0))}  # same draws
    originals = {f.original for f in expected.values()}
    label, word = split.targets["label"], split.targets["word"]
    assert label.sum() == len(expected) == (label == 0).sum()  # each item true once, foiled once
    for k in range(len(split)):
        text = split.texts[k][0]
        if label[k] == 0:
            assert text in originals and word[k] == -1
            continue
        first = tokenizer.encode(" " + expected[text].foil_word)[0]
        assert split.ids[k, 0, word[k]] == first, (text, expected[text].foil_word)


def test_retrieval_passes_are_vilberts_four(tasks):
    split = tasks["retrieval"]["test"]
    for k in range(len(split)):
        y = split.targets["label"][k]
        images, texts = split.images[k], split.texts[k]
        assert sum(i == images[y] for i in images) == 3  # true pair, random caption, hard negative
        assert sum(t == texts[y] for t in texts) == 2  # true pair, random image


def test_vcr_passes_hold_the_question_and_the_right_answer(tasks):
    split = tasks["vcr"]["val"]
    assert (split.images == split.images[:, :1]).all()
    for k in range(len(split)):
        texts = split.texts[k]
        question = texts[0].split(" [SEP] ")[0]
        right = texts[split.targets["answer"][k]].split(" [SEP] ")[1]
        assert all(t.startswith(question) for t in texts)
        assert all(t.split(" [SEP] ")[0] == f"{question} {right}" for t in texts[4:])


def test_nlvr_pairs_two_images_of_one_pool(tasks):
    split = tasks["nlvr"]["train"]
    assert (split.images[:, 0] != split.images[:, 1]).all()
    assert set(split.targets["label"].tolist()) == {0, 1}
    assert (split.ids[:, 0] == split.ids[:, 1]).all()


def test_bad_arguments_raise(tokenizer):
    world = ShapesWorld(seed=0)
    with pytest.raises(ValueError, match="task"):
        make_task("captioning", world, tokenizer, OneHotRegions(), sizes=(10, 10, 10))
    scenes = world.iid_scenes(5, "train")
    with pytest.raises(ValueError, match="regions"):
        build_split("vqa", scenes, "train", tokenizer, OneHotRegions().encode(None, scenes[:3]),
                    np.random.default_rng(0))


def test_items_longer_than_max_len_are_left_out(tokenizer):
    scenes = ShapesWorld(seed=2).iid_scenes(40, "train")
    regions = OneHotRegions().encode(None, scenes)
    full = build_split("nlvr", scenes, "train", tokenizer, regions, np.random.default_rng(0))
    lengths = full.text_mask.sum(-1).max(1)  # (N,) the longest pass of each item
    limit = int(np.median(lengths))
    short = build_split("nlvr", scenes, "train", tokenizer, regions, np.random.default_rng(0), max_len=limit)
    assert len(short) == (lengths <= limit).sum() < len(full)
    assert short.ids.shape[-1] <= limit
    np.testing.assert_array_equal(short.targets["label"], full.targets["label"][lengths <= limit])


def test_held_out_parts_do_not_depend_on_the_training_count():
    """More training scenes (``vilbert_table.TRAIN_SCENES``) leave val and test the same scenes,
    so scores at different training counts compare on one test set."""
    from minivl.data.vilbert_tasks import scene_parts

    world = ShapesWorld(seed=0)
    few, many = (scene_parts(world, OneHotRegions(), (n, 30, 40)) for n in (50, 150))
    assert len(few["train"][0]) == 50 and len(many["train"][0]) == 150
    for part in ("val", "test"):
        assert [scene_key(s, "scene") for s in few[part][0]] == [scene_key(s, "scene") for s in many[part][0]]
        np.testing.assert_array_equal(few[part][1].feats, many[part][1].feats)


def test_vcr_details_name_what_a_count_counts_by_and_the_objects(tasks):
    """``detail``: "count:" and the fields the counted phrase names (read back from the question's
    words), "relation" for relation items; ``objects``: the scene's object count."""
    from minivl.data.language import SIZE_WORDS
    from minivl.data.shapes import COLOURS, SHAPES

    sizes = {w for ws in SIZE_WORDS for w in ws}
    for split in tasks["vcr"].values():
        for k in range(len(split)):
            words = split.texts[k][0].split(" [SEP] ")[0].rstrip("?").split()
            detail = split.targets["detail"][k]
            assert split.targets["objects"][k] == len(split.scenes[split.images[k, 0]])
            if split.groups[k] == "relation":
                assert detail == "relation"
                continue
            named = [f for f, hit in (("size", any(w in sizes for w in words)),
                                      ("colour", any(w in COLOURS for w in words)),
                                      ("shape", any(w.rstrip("s") in SHAPES or w.removesuffix("es") in SHAPES
                                                    for w in words))) if hit]
            assert detail == "count:" + "+".join(named), (words, detail)
