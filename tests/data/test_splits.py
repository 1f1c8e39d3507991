"""The i.i.d. train / val / test parts (``minivl/data/splits.py``): no rendered
image and no caption naming a scene's objects is in two parts, whatever the
seeds; every task built from one part's scenes inherits that; the parts' sizes
follow the fractions; and bad requests say what is wrong."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from minivl.data import IID_PARTS, ShapesWorld, iid_part, scene_key


def _pixel_hashes(world, scenes):
    return {hashlib.sha256(image.tobytes()).hexdigest() for image in world.render(scenes)}


def _texts_by_part(world, parts):
    """Per part: every true text that names all of a scene's objects by colour and shape.
    (Made-up wrong rationales may name any objects: they are false of their image.)"""
    out = {}
    for part, scenes in parts.items():
        texts = set(world.captions(scenes, rng=1, kinds=("list",)))
        texts |= {item.caption for item in world.retrieval(scenes, rng=2)}
        texts |= {item.rationales[item.rationale_label]
                  for item in world.multiple_choice(scenes, rng=3) if item.kind == "count"}  # fmt: skip
        out[part] = texts
    return out


def test_no_image_and_no_caption_is_in_two_parts():
    # one-object scenes collide most: 36 classes x 2 sizes x positions. (At image_size=16 a
    # small object is 3 px, where some shapes render alike: different keys, same pixels.)
    world = ShapesWorld(image_size=32, min_objects=1, max_objects=2, seed=0)
    parts = {part: world.iid_scenes(1500, part, rng=k) for k, part in enumerate(IID_PARTS)}
    assert all(len(scenes) == 1500 for scenes in parts.values())
    pixels = {part: _pixel_hashes(world, scenes) for part, scenes in parts.items()}
    texts = _texts_by_part(world, parts)
    for a in IID_PARTS:
        for b in IID_PARTS:
            if a < b:
                assert not pixels[a] & pixels[b], (a, b)
                assert not texts[a] & texts[b], (a, b, sorted(texts[a] & texts[b])[:3])
    # split by the image itself: still no image in two parts
    by_image = {part: world.iid_scenes(1500, part, rng=k, key="scene") for k, part in enumerate(IID_PARTS)}
    hashes = [_pixel_hashes(world, scenes) for scenes in by_image.values()]
    assert not (hashes[0] & hashes[1]) and not (hashes[0] & hashes[2]) and not (hashes[1] & hashes[2])
    # the same draws cut in two without a key share images: the checks above can fail
    loose = world.scenes(3000, rng=9)
    assert len(_pixel_hashes(world, loose[:1500]) & _pixel_hashes(world, loose[1500:])) > 0


def test_a_scenes_part_depends_on_its_objects_only_and_follows_the_fractions():
    world = ShapesWorld(max_objects=3, seed=0)
    scenes = world.scenes(6000, rng=4)
    parts = [iid_part(s) for s in scenes]
    shares = {p: parts.count(p) / len(parts) for p in IID_PARTS}
    assert abs(shares["train"] - 0.8) < 0.05 and abs(shares["val"] - 0.1) < 0.04, shares
    by_key = {}
    for scene, part in zip(scenes, parts):
        assert by_key.setdefault(scene_key(scene), part) == part
    assert iid_part(scenes[0], salt=1) in IID_PARTS  # another salt, another split
    other = {iid_part(s, salt=1) for s in scenes[:200]} , {iid_part(s) for s in scenes[:200]}
    assert other[0] == other[1] == set(IID_PARTS)


def test_tasks_from_one_part_stay_in_it():
    world = ShapesWorld(max_objects=3, seed=0)
    val = world.iid_scenes(200, "val", rng=5)
    assert {iid_part(s) for s in val} == {"val"}
    for item in world.nlvr(val, 50, rng=6):  # pairs index into the part's own pool
        assert 0 <= item.left < len(val) and 0 <= item.right < len(val)
    # composes with the compositional split
    held = world.held_out_class_ids
    for scene in world.iid_scenes(100, "test", rng=7, split="train"):
        assert iid_part(scene) == "test" and not set(scene.class_ids.tolist()) & held


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 10, "part": "validation"}, "part"),
        ({"n": 0, "part": "val"}, "n "),
        ({"n": 10, "part": "val", "fractions": (0.5, 0.5)}, "fractions"),
        ({"n": 10, "part": "val", "fractions": (1.0, 0.0, 0.0)}, "fraction 0"),
        ({"n": 10, "part": "val", "key": "pixels"}, "key"),
    ],
)
def test_bad_part_requests_raise_value_errors(kwargs, match):
    world = ShapesWorld(seed=0)
    with pytest.raises(ValueError, match=match):
        world.iid_scenes(rng=np.random.default_rng(0), **kwargs)
