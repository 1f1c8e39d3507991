"""Image-caption pairs for CLIP (lecture S12-S17): the training pairs, and
evaluation sets that share nothing with them.

Training pairs (shapes world):

* single-object scenes captioned from ``TRAIN_TEMPLATES`` ("a photo of a red
  circle."); a fraction ``partial`` names only the colour or only the shape,
  and some shape-only images are shown in grey, so shape must be read from
  the outline alone;
* multi-object scenes captioned by listing their objects, each followed by a
  *twin* that differs in one word of its caption (a hard negative kept in the
  same batch by ``minivl.recipes.clip.batches``).

Objects sit in a 3 x 3 grid of 16-pixel cells of a 48 x 48 image, one ViT
patch per cell (``grid=3``), or anywhere (``grid=None``).

The evaluation sets follow the honest protocol of issue 10:

* zero-shot prompts are written with ``EVAL_TEMPLATES``, which never wrote a
  training caption (CLIP's own prompts were never its training captions);
* held-out (colour, shape) pairs never appear in training; "seen" images and
  the retrieval scenes are drawn again until none is pixel-identical to a
  training image, and no retrieval caption is a training caption
  (``overlap`` counts what is left: the tests assert zero);
* on the digits every class is in training, so the digits score is
  classification with text labels, read with unseen templates, not zero-shot.

``shifted_scenes`` draws the S17 test renders: the same classes, with objects
placed anywhere, at new sizes, in grey, or on a new background.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from minivl.data.captions import Caption
from minivl.data.digits import DIGIT_NAMES, DIGIT_TEMPLATES, load_digits, resize
from minivl.data.language import describe
from minivl.data.render import render
from minivl.data.shapes import CLASS_NAMES, COLOURS, SHAPES, Scene, ShapeObject
from minivl.data.world import ShapesWorld

# The training captions come from these; zero-shot prompts only from EVAL_TEMPLATES.
TRAIN_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "a drawing of a {}.",
                   "a {} on a black background.")
EVAL_TEMPLATES = ("a rendering of the {}.", "this is a {}.", "a close-up of the {}.",
                  "a snapshot of a {}.")  # no caption frame of minivl.data.captions either
DIGIT_TRAIN_TEMPLATES = DIGIT_TEMPLATES
DIGIT_EVAL_TEMPLATES = ("an image of the digit {}.", "a picture of a handwritten {}.",
                        "the digit {}, written by hand.")
SHIFTS = ("anywhere", "new sizes", "grey", "new background")


def prompt_captions(scenes, rng, templates=TRAIN_TEMPLATES, partial=0.0):
    """"a photo of a red circle." for single-object scenes, a random template each.

    A fraction ``partial`` names only the colour ("a photo of a red shape.")
    or only the shape ("a photo of a circle."), as web captions vary in
    detail; it teaches the two attributes apart, which is what lets a
    never-seen pair be recognised. Returns the captions and a boolean array
    marking the shape-only ones.
    """
    captions, shape_only = [], np.zeros(len(scenes), dtype=bool)
    for k, scene in enumerate(scenes):
        colour, shape = CLASS_NAMES[scene.objects[0].class_id].split()
        name = f"{colour} {shape}"
        if rng.random() < partial:
            shape_only[k] = rng.random() < 0.5
            name = shape if shape_only[k] else f"{colour} shape"
        captions.append(templates[int(rng.integers(len(templates)))].format(name))
    return captions, shape_only


def to_grey(images):
    """RGB uint8 ``(N, S, S, 3)`` -> its luminance, still ``(N, S, S, 3)`` (ITU-R 601 weights)."""
    luminance = images @ np.array([0.299, 0.587, 0.114])  # (N, S, S)
    return np.repeat(np.round(luminance).astype(np.uint8)[..., None], 3, axis=-1)


def canonical_caption(scene) -> str:
    """Every object as "colour shape", in class order: equal captions mean equal contents."""
    objects = sorted(scene.objects, key=lambda o: o.class_id)
    return Caption("list", tuple(describe(o, ("colour", "shape")) for o in objects)).text


def fingerprints(images) -> set[bytes]:
    """One key per image: equal keys mean pixel-identical images."""
    return {image.tobytes() for image in np.asarray(images)}


def distinct_caption_set(world, n, rng, max_objects=3, avoid_images=frozenset(),
                         avoid_captions=frozenset(), max_rounds=50):
    """``n`` multi-object scenes whose canonical captions are all different, and
    neither a caption in ``avoid_captions`` nor an image in ``avoid_images``."""
    scenes, captions, seen = [], [], set(avoid_captions)
    for _ in range(max_rounds):
        for scene in world.scenes(2 * n, split="train", rng=rng):
            caption = canonical_caption(scene)
            if caption in seen or len(scene) > max_objects:
                continue
            if avoid_images and world.render([scene])[0].tobytes() in avoid_images:
                continue
            seen.add(caption)
            scenes.append(scene)
            captions.append(caption)
            if len(scenes) == n:
                return scenes, captions
    raise ValueError(f"found only {len(scenes)} of {n} retrieval scenes unlike the training set")


def twin_scene(scene, rng, held_out_ids):
    """The scene with one change that its caption would notice, or None if none is allowed.

    Either one object gets another colour or shape, or two objects swap
    colours, which keeps the bag of words and changes only who is what colour.
    A swap must change what the caption says, so the two objects differ in
    colour and in shape or size (two big squares, red and cyan, swapped, are
    the same scene described twice: a false negative). Held-out pairs stay out.
    """
    objects = list(scene.objects)

    def swappable(a, b):
        return a.colour != b.colour and (a.shape, a.size) != (b.shape, b.size)

    kinds = ["colour", "shape"] + (["swap"] if len(objects) > 1 else [])
    for _ in range(20):
        kind = kinds[int(rng.integers(len(kinds)))]
        new = list(objects)
        if kind == "swap":
            i, j = rng.choice(len(objects), 2, replace=False)
            if not swappable(objects[i], objects[j]):
                continue
            new[i] = replace(objects[i], colour=objects[j].colour)
            new[j] = replace(objects[j], colour=objects[i].colour)
        else:
            i = int(rng.integers(len(objects)))
            count = len(COLOURS) if kind == "colour" else len(SHAPES)
            value = (getattr(objects[i], kind) + 1 + int(rng.integers(count - 1))) % count
            new[i] = replace(objects[i], **{kind: value})
        if all(o.class_id not in held_out_ids for o in new):
            return Scene(scene.image_size, tuple(new))
    return None


def one_object_scenes(world, n, split, rng):
    """Single-object scenes: one object in a random cell on a grid world, else one big centred one."""
    if world.grid:
        return world.scenes(n, split=split, rng=rng, objects=1)
    return world.single_object_scenes(n, split=split, rng=rng)


def unseen_one_object_set(world, n, split, rng, avoid_images, max_rounds=20):
    """Up to ``n`` single-object images and labels, none in ``avoid_images`` nor repeated.

    A grid world has only a few thousand distinct single-object renders and
    the training set holds most of the seen-class ones, so fewer than ``n``
    may be left: the caller reports how many.
    """
    keep, keys = [], set(avoid_images)
    for _ in range(max_rounds):
        for scene in one_object_scenes(world, n, split, rng):
            key = world.render([scene])[0].tobytes()
            if key not in keys:
                keys.add(key)
                keep.append(scene)
                if len(keep) == n:
                    break
        if len(keep) == n:
            break
    labels = np.array([s.class_ids[0] for s in keep], dtype=np.int64)
    images = world.render(keep) if keep else np.zeros((0, world.image_size, world.image_size, 3), np.uint8)
    return images, labels


def shapes_pairs(world, n_single, n_multi, rng, partial=0.0, twins=False, grey=0.0):
    """Training pairs: uint8 images ``(N, S, S, 3)`` and one caption each.

    ``grey``: the fraction of the shape-only single-object pairs whose image is
    turned to grey (random-grayscale augmentation): the caption does not name
    a colour, and the image then shows none. No held-out pair is shown.

    With ``twins`` every multi-object scene is followed by its ``twin_scene``
    (rows 2k and 2k + 1): each pair then meets, in its batch, a negative that
    differs from it in one word, the kind of hard negative a batch of 32,768
    holds by chance (S14).
    """
    single = one_object_scenes(world, n_single, "train", rng) if n_single else []
    multi = world.scenes(n_multi // 2 if twins else n_multi, split="train", rng=rng) if n_multi else []
    if twins:
        paired = []
        for scene in multi:
            twin = twin_scene(scene, rng, world.held_out_class_ids)
            paired += [scene, twin if twin is not None else world.scenes(1, "train", rng)[0]]
        multi = paired
    single_captions, shape_only = prompt_captions(single, rng, partial=partial)
    captions = single_captions + world.captions(multi, rng=rng, kinds=("list",))
    images = world.render(single + multi)
    turn = np.flatnonzero(shape_only & (rng.random(len(single)) < grey))
    images[turn] = to_grey(images[turn])
    return images, captions


def digit_images(split, size, seed=0):
    """Digits as uint8 ``(N, size, size)`` and labels; upscaled (bilinear) from 8 x 8."""
    d = load_digits(split, seed=seed)
    images = d.images if size == 8 else np.round(resize(d.images, size, "bilinear")).astype(np.uint8)
    return images, d.labels


def overlap(train_images, train_captions, evals) -> dict:
    """How many evaluation images (and captions) are identical to training ones: all 0 by design."""
    keys, texts = fingerprints(train_images), set(train_captions)
    out = {}
    for name, value in evals.items():
        if isinstance(value, tuple):
            images, second = value
            out[f"{name}_images_in_train"] = sum(k in keys for k in (i.tobytes() for i in images))
            if name == "retrieval":
                out["retrieval_captions_in_train"] = sum(t in texts for t in second)
    return out


def make_clip_data(task, n_train, image_size, seed, n_zero_shot=600, n_retrieval=1000,
                   multi_fraction=0.5, partial=0.0, twins=False, grey=0.0, grid=None):
    """Training images and captions of ``task`` and its evaluation sets (all seeded).

    Shapes: ``multi_fraction`` of the pairs are multi-object scenes, the rest
    single objects. Evaluation sets: ``held_out`` (images, labels) of the
    never-trained pairs, ``seen`` (images, labels) of trained pairs at
    renders absent from training, ``retrieval`` (images, captions) of distinct
    scenes absent from training, ``held_out_ids``. Digits: ``test`` (images,
    labels) without images identical to a training one.
    """
    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng([seed, 1])  # independent of how much was trained on
    if task == "shapes":
        world = ShapesWorld(image_size=image_size, max_objects=3, seed=seed, grid=grid)
        n_multi = 2 * int(round(n_train * multi_fraction / 2))  # even: twins come in pairs
        images, captions = shapes_pairs(world, n_train - n_multi, n_multi, rng, partial, twins, grey)
        keys = fingerprints(images)
        scenes, texts = distinct_caption_set(world, n_retrieval, test_rng, avoid_images=keys,
                                             avoid_captions=set(captions))
        evals = {
            "held_out": unseen_one_object_set(world, n_zero_shot, "test", test_rng, keys),
            "seen": unseen_one_object_set(world, n_zero_shot, "train", test_rng, keys),
            "retrieval": (world.render(scenes), texts),
            "held_out_ids": sorted(world.held_out_class_ids),
        }
        return images, captions, evals
    images, labels = digit_images("train", image_size, seed)
    captions = [DIGIT_TRAIN_TEMPLATES[int(rng.integers(len(DIGIT_TRAIN_TEMPLATES)))]
                .format(DIGIT_NAMES[y]) for y in labels]
    test_images, test_labels = digit_images("test", image_size, seed)
    keys = fingerprints(images)
    fresh = np.array([i.tobytes() not in keys for i in test_images], dtype=bool)
    return images, captions, {"test": (test_images[fresh], test_labels[fresh])}


def shifted_scenes(n, shift, rng, image_size=48, grid=3, background=(70, 70, 160)):
    """``n`` single-object renders of trained (colour, shape) pairs under one S17 shift.

    ``shift``: ``None`` (the training distribution: one object in a grid cell,
    the two trained sizes, black background), "anywhere" (placed at any pixel,
    across cell borders), "new sizes" (sides of 1/8 and 1/2 of the image,
    between and beyond the trained 3/16 and 5/16), "grey" (luminance only) or
    "new background" (``background`` instead of black). Returns uint8 images
    ``(n, S, S, 3)`` and labels: the class id and the shape index.
    """
    if shift is not None and shift not in SHIFTS:
        raise ValueError(f"shift must be None or one of {SHIFTS}, got {shift!r}")
    world = ShapesWorld(image_size=image_size, max_objects=1, grid=None if shift == "anywhere" else grid)
    scenes = world.scenes(n, split="train", rng=rng, objects=1)
    if shift == "new sizes":
        resized = []
        for scene in scenes:
            o = scene.objects[0]
            side = max(3, int(image_size * (1 / 8, 1 / 2)[int(rng.integers(2))]))
            x, y = (int(v) for v in rng.integers(0, image_size - side + 1, 2))
            resized.append(Scene(image_size, (ShapeObject(o.shape, o.colour, o.size,
                                                          (x, y, x + side, y + side)),)))
        scenes = resized
    images = render(scenes, background=background) if shift == "new background" else render(scenes)
    if shift == "grey":
        images = to_grey(images)
    labels = {"class": np.array([s.objects[0].class_id for s in scenes]),
              "shape": np.array([s.objects[0].shape for s in scenes])}
    return images, labels


__all__ = ["TRAIN_TEMPLATES", "EVAL_TEMPLATES", "DIGIT_TRAIN_TEMPLATES", "DIGIT_EVAL_TEMPLATES",
           "SHIFTS", "prompt_captions", "to_grey", "canonical_caption", "fingerprints",
           "distinct_caption_set", "twin_scene", "one_object_scenes", "unseen_one_object_set",
           "shapes_pairs", "digit_images", "overlap", "make_clip_data", "shifted_scenes"]
