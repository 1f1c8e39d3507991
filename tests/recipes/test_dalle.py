"""The DALL-E recipe and command (``minivl/recipes/dalle.py``, ``minivl/commands/dalle.py``)
on tiny settings: the data's held-out sets, training and saving a prior, cached sampling
through a dVAE, CLIP reranking, the judge-based evaluation, and the CLI's errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from minivl.checkpoint import save_checkpoint
from minivl.cli import main
from minivl.data.captions import Caption, holds
from minivl.data.dalle_pairs import caption_says, make_dalle_data
from minivl.data.language import Description
from minivl.data.shapes import Scene, ShapeObject
from minivl.models.dvae import DiscreteVAE, pixels
from minivl.recipes.dalle import (
    CHECKPOINT,
    attribute_accuracy,
    caption_preference,
    check_words,
    decode,
    default_reranker,
    evaluate,
    generate_codes,
    load_prior,
    reload_prior,
    rerank,
    swap_losses,
    swap_run,
    swap_words,
    text_ids,
    train_prior,
    train_reranker,
    validation,
)
from minivl.tensor import Tensor

TINY_PRIOR = dict(steps=3, batch_size=8, dim=16, depth=2, heads=2, n_train=200, vocab_size=450, text_len=24,
                  eval_every=0, progress=False)


@pytest.fixture(scope="module")
def dvae():
    return DiscreteVAE(image_size=32, vocab_size=16, widths=(4, 8, 8), codebook_dim=8).eval()


@pytest.fixture(scope="module")
def run(dvae, tmp_path_factory):
    out = tmp_path_factory.mktemp("dalle")
    return train_prior(dvae, attention="sparse", out=out, caption_dropout=0.5, **TINY_PRIOR), out


def test_held_out_sets_share_no_caption_with_training():
    train, evals = make_dalle_data(n_train=500, n_eval=40, seed=3)
    seen = set(train.captions)
    assert not seen & set(evals["held_out_scenes"].captions)
    assert not seen & set(evals["held_out_pairs"].captions)
    held = {(o.colour, o.shape) for s in evals["held_out_pairs"].scenes for o in s.objects}
    trained = {(o.colour, o.shape) for s in train.scenes for o in s.objects}
    assert all(any((o.colour, o.shape) not in trained for o in s.objects) for s in evals["held_out_pairs"].scenes)
    assert held - trained  # the compositional set does show never-trained pairs
    for pairs in (train, *evals.values()):  # every caption names all of its scene
        assert all(caption_says(c, s) for c, s in zip(pairs.structured, pairs.scenes))


def test_caption_says_needs_every_object_named():
    red_circle = ShapeObject(0, 0, 0, (0, 0, 6, 6))
    blue_square = ShapeObject(1, 2, 1, (16, 0, 26, 10))
    caption = Caption("list", (Description(shape=0, colour=0),))
    assert caption_says(caption, Scene(32, (red_circle,)))
    two = Scene(32, (red_circle, blue_square))
    assert holds(caption, two) and not caption_says(caption, two)  # an extra object is not what it says


def test_prior_trains_saves_and_samples_through_the_dvae(run, dvae):
    r, out = run
    m = r["metrics"]
    assert m["steps"] == 3 and np.isfinite(m["held_out_scenes_image_loss"]) and m["caption_dropout"] == 0.5
    assert r["history"].evals[0]["step"] == 0 and len(r["history"].loss) == 3
    model, bpe, words = load_prior(out / CHECKPOINT)
    assert model.config == r["model"].config and "circle" in words
    captions = ["a red circle.", "a blue square is above a green ring."]
    a = generate_codes(model, bpe, captions, n=2, seed=5)
    b = generate_codes(model, bpe, captions, n=2, seed=5)
    np.testing.assert_array_equal(a, b)  # seeded
    assert a.shape == (2, 2, *dvae.grid) and a.max() < dvae.K
    images = decode(dvae, a)
    assert images.shape == (2, 2, 32, 32, 3) and images.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown word.*'orange'"):
        check_words(["an orange circle."], words)


def test_reranking_puts_the_matching_image_first():
    train, evals = make_dalle_data(n_train=300, n_eval=8, seed=1)
    clip, tok, info = train_reranker(train, steps=2, batch_size=16, dim=16, depth=1, progress=False)
    pairs = evals["held_out_scenes"]
    candidates = np.stack([pairs.images[[i, (i + 1) % 8, (i + 2) % 8]] for i in range(8)])  # (8, 3, ...)
    order, scores = rerank(clip, tok, candidates, pairs.captions)
    assert order.shape == scores.shape == (8, 3) and (np.diff(scores, axis=1) <= 0).all()
    # the order is the argsort of the scores computed one candidate at a time
    from minivl.recipes.dalle import clip_scores

    single = np.concatenate([clip_scores(clip, tok, candidates[:, k:k + 1], pairs.captions) for k in range(3)], 1)
    np.testing.assert_array_equal(order, np.argsort(-single, axis=1, kind="stable"))


class _ColourOnlyCLIP:
    """A stand-in reranker that reads colour words and nothing else: image i scores a
    caption 1 when its colour words are those of image i's true caption, else 0."""

    scale = 1.0

    def __init__(self, truth):
        self.truth = truth

    @staticmethod
    def colours(text):
        from minivl.data.shapes import COLOURS

        return [w for w in re.findall(r"[a-z]+", text) if w in COLOURS]

    def encode_image(self, x):
        return Tensor(np.eye(len(self.truth))[: len(x.data)])  # (N, N): image i is axis i

    def encode_text(self, captions, mask):
        return Tensor(np.diag([float(self.colours(c) == self.colours(t)) for c, t in zip(captions, self.truth)]))


def test_caption_preference_counts_a_true_caption_scored_above_its_swapped_version():
    _, evals = make_dalle_data(n_train=200, n_eval=12, seed=2)
    pairs = evals["held_out_scenes"]
    clip = _ColourOnlyCLIP(pairs.captions)
    preference = caption_preference(clip, lambda captions: (captions, None), pairs)
    # blind to shape words: every shape swap ties with the truth (a tie is not a preference);
    # every colour swap loses
    assert preference == {"shape": 0.0, "colour": 1.0}


def test_default_reranker_names_an_unknown_setting():
    with pytest.raises(ValueError, match="unknown reranker setting.*'stepz'"):
        default_reranker(0, progress=False, stepz=3)


def test_evaluation_counts_what_the_judge_accepts(run, dvae):
    r, _ = run
    _, evals = r["data"][:2]
    calls = []

    def judge(images, captions):  # accepts exactly the images whose top-left pixel is darker than 128
        calls.append(len(images))
        return images[:, 0, 0].mean(-1) < 128

    m = evaluate(r["model"], r["bpe"], dvae, evals, judge, n_candidates=3, n_eval=4, seed=0)
    codes = generate_codes(r["model"], r["bpe"], evals["held_out_pairs"].captions[:4], 3, seed=0)
    ok = decode(dvae, codes)[:, :, 0, 0].mean(-1) < 128  # (4, 3)
    got = m["held_out_pairs"]
    assert got["correct"] == ok[:, 0].mean() and got["correct_any"] == ok.any(1).mean()
    assert got["correct_mean_over_candidates"] == pytest.approx(ok.mean())
    assert got["captions"] == 4 and got["candidates"] == 3 and got["code_perplexity"] >= 1


def test_cli_generates_a_grid_and_names_its_errors(run, dvae, tmp_path, capsys):
    _, out = run
    dvae_path = tmp_path / "dvae.safetensors"
    save_checkpoint(dvae, dvae_path)
    png = tmp_path / "grid.png"
    assert main(["dalle", "generate", "a red circle.", "--n", "2", "--checkpoint", str(out),
                 "--dvae", str(dvae_path), "--out", str(png), "--quiet"]) == 0
    assert png.stat().st_size > 0
    assert main(["dalle", "generate", "a red circle.", "--n", "2", "--checkpoint", str(out), "--guidance", "3",
                 "--dvae", str(dvae_path), "--out", str(png), "--quiet"]) == 0
    with pytest.raises(SystemExit, match="unknown word.*'orange'"):
        main(["dalle", "generate", "an orange circle.", "--checkpoint", str(out), "--dvae", str(dvae_path),
              "--out", str(png), "--quiet"])
    other = tmp_path / "other.safetensors"
    save_checkpoint(DiscreteVAE(image_size=32, vocab_size=8, widths=(4, 8), codebook_dim=8), other)
    with pytest.raises(SystemExit, match="grid of 16"):  # a dVAE of another codebook and grid
        main(["dalle", "generate", "a red circle.", "--checkpoint", str(out), "--dvae", str(other),
              "--out", str(png), "--quiet"])
    with pytest.raises(SystemExit, match="no prior"):
        main(["dalle", "generate", "a red circle.", "--checkpoint", str(tmp_path / "nowhere"),
              "--dvae", str(dvae_path), "--quiet"])
    with pytest.raises(SystemExit, match="DALLE"):  # a dVAE file given as the prior
        main(["dalle", "generate", "a red circle.", "--checkpoint", str(dvae_path), "--dvae", str(dvae_path),
              "--quiet"])


def test_training_batches_drop_captions_reproducibly(run):
    """Caption dropout in training (classifier-free guidance, not DALL-E 1): batch s depends only
    on (seed, s); a row keeps its caption or gets the empty one, never anything else; p = 0
    leaves the batches as they were."""
    from itertools import islice

    from minivl.recipes.dalle import batches, drop_captions

    model, streams = run[0]["model"], np.asarray(run[0]["data"][3])
    L = model.config.text_len
    streams = model.stream(text_ids(model, run[0]["bpe"], run[0]["data"][0].captions), streams)
    plain = list(islice(batches(streams, 64, 4), 3))
    a = list(islice(drop_captions(model, batches(streams, 64, 4), 0.5, 4), 3))
    b = list(islice(drop_captions(model, batches(streams, 64, 4), 0.5, 4), 3))
    for x, y, p in zip(a, b, plain):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x[:, L:], p[:, L:])
        empty = (x[:, :L] == model.empty_text(1)).all(axis=1)
        np.testing.assert_array_equal(x[~empty], p[~empty])
        assert 0 < (empty & (p[:, :L] != model.empty_text(1)).any(axis=1)).sum() < 64
    for x, p in zip(drop_captions(model, iter(plain), 0.0, 4), plain):
        assert x is p


def test_a_saved_prior_is_judged_again_as_it_was_trained(run, dvae):
    r, out = run
    back = reload_prior(out / CHECKPOINT, dvae, seed=0)
    text = ["a red circle.", "a blue square is above a green ring."]
    a = generate_codes(r["model"], r["bpe"], text, 2, seed=5)
    b = generate_codes(back["model"], back["bpe"], text, 2, seed=5)
    np.testing.assert_array_equal(a, b)  # same weights, same BPE: same samples
    assert back["data"][1]["held_out_pairs"].captions == r["data"][1]["held_out_pairs"].captions
    assert int(back["metrics"]["steps"]) == TINY_PRIOR["steps"] and back["metrics"]["reloaded_from"]
    with pytest.raises(ValueError, match="grid"):
        reload_prior(out / CHECKPOINT, DiscreteVAE(image_size=32, vocab_size=16, widths=(4, 8), codebook_dim=8), 0)


def test_cli_trains_a_vae_then_a_prior_that_finds_it(tmp_path, monkeypatch, capsys):
    from minivl.recipes import dvae as dvae_recipe

    monkeypatch.setattr(dvae_recipe, "DEFAULTS", {**dvae_recipe.DEFAULTS, "widths": (4, 8, 8), "codebook_dim": 8,
                                                  "vocab_size": 16, "n_train": 64, "batch_size": 8})
    assert main(["dalle", "train-vae", "--steps", "2", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "dvae.safetensors").is_file()
    assert main(["dalle", "train-prior", "--steps", "2", "--dim", "16", "--depth", "1", "--heads", "2",
                 "--batch-size", "4", "--n-train", "300", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "DALL-E prior (full attention, axial positions)" in out and "held-out scenes" in out
    model, _, _ = load_prior(tmp_path / CHECKPOINT)
    assert model.config.image_vocab == 16  # the prior read the codes of the dVAE beside it
    assert model.config.image_positions == "axial"  # the recipe's default reaches the command


def test_patch_codebook_stand_in_round_trips_its_own_codes():
    from minivl.recipes.dalle import PatchCodebook

    train, _ = make_dalle_data(n_train=60, n_eval=4, seed=2)
    book = PatchCodebook(train.images, K=16, iterations=3)
    assert book.grid == (8, 8) and book.K == 16
    _, unique = np.unique(book.centroids, axis=0, return_index=True)  # codes with distinct centroids
    codes = np.random.default_rng(0).choice(unique, (3, 8, 8))
    pixels = book.decode_codes(codes)  # (3, 3, 32, 32): each 4 x 4 patch is its centroid
    assert pixels.shape == (3, 3, 32, 32)
    for b, r, c in [(1, 1, 2), (1, 2, 1), (2, 7, 0), (0, 0, 5)]:
        np.testing.assert_allclose(pixels[b, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(-1),
                                   book.centroids[codes[b, r, c]])
    np.testing.assert_array_equal(book.encode_codes(pixels), codes)  # nearest centroid of a centroid: itself


def test_swap_words_changes_only_the_named_kind():
    from minivl.data.shapes import COLOURS, SHAPES

    text = "a red circle left of a large blue ring"
    assert swap_words(text, SHAPES) == "a red square left of a large blue circle"
    assert swap_words(text, COLOURS) == "a green circle left of a large yellow ring"
    assert swap_words("two red crosses", SHAPES) == "two red rings"  # plurals too
    assert swap_words("a reddish circlet", COLOURS + SHAPES) == "a reddish circlet"  # whole words only


def test_swap_losses_are_the_teacher_forced_losses_of_each_caption(run, dvae):
    from minivl.data.shapes import SHAPES

    r = run[0]
    model, bpe = r["model"], r["bpe"]
    pairs = r["data"][1]["held_out_scenes"][:12]
    codes = dvae.encode_codes(pixels(pairs.images))
    got = swap_losses(model, bpe, pairs.captions, codes)
    for name, texts in (("true", pairs.captions), ("shape_swapped", [swap_words(c, SHAPES) for c in pairs.captions])):
        streams = model.stream(text_ids(model, bpe, texts), codes)
        want = validation(model, streams)["image_loss"]  # another path; tight: a swap moves this
        # barely trained prior's loss by only ~1e-4 relative
        np.testing.assert_allclose(got[f"{name}_nats_per_code"], want, rtol=2e-6)
    assert got["shape_swapped_gap_per_image"] == pytest.approx(
        got["shape_swapped_nats_per_image"] - got["true_nats_per_image"], abs=1e-6)
    assert 0 <= got["colour_swapped_prefers_true"] <= 1 and got["images"] == 12


def test_swap_run_measures_the_trained_priors_own_held_out_loss(dvae, tmp_path):
    path = tmp_path / "dvae.safetensors"
    save_checkpoint(dvae, path)
    settings = {k: v for k, v in TINY_PRIOR.items() if k not in ("steps", "progress")}
    run = swap_run(0, steps=2, n_eval=None, dvae=str(path), progress=False, **settings)
    for name in ("held_out_scenes", "held_out_pairs"):
        swap = run["evaluation"][name]["swap"]
        assert swap["codes_per_image"] == dvae.grid[0] * dvae.grid[1]
        # every image of the set, after its true caption: the prior's own validation loss
        assert swap["true_nats_per_code"] == pytest.approx(run["prior"][f"{name}_image_loss"], rel=1e-5)


def test_attribute_accuracy_names_the_attribute_a_reading_gets_wrong():
    # "a small red circle is left of a blue square": circle 0, square 1, ring 5; red 0, green 1, blue 2
    caption = Caption("relation", (Description(shape=0, colour=0, size=0), Description(shape=1, colour=2)),
                      relation="left")
    circle, square = ShapeObject(0, 0, 0, (0, 0, 6, 6)), ShapeObject(1, 2, 1, (16, 0, 26, 10))
    right = Scene(32, (circle, square))
    readings = {
        "right": right,
        "green square": Scene(32, (circle, ShapeObject(1, 1, 1, (16, 0, 26, 10)))),
        "a ring": Scene(32, (ShapeObject(5, 0, 0, (0, 0, 6, 6)), square)),
        "large circle": Scene(32, (ShapeObject(0, 0, 1, (0, 0, 10, 10)), square)),
        "the square alone": Scene(32, (square,)),
        "swapped places": Scene(32, (ShapeObject(0, 0, 0, (20, 0, 26, 6)), ShapeObject(1, 2, 1, (0, 0, 10, 10)))),
    }
    got = {k: attribute_accuracy([r], [caption]) for k, r in readings.items()}
    fields = ("objects", "colours", "shapes", "sizes", "colours_shapes", "phrases", "exact", "relations")
    want = {"right": (1, 1, 1, 1, 1, 1, 1, 1), "green square": (1, 0, 1, 1, 0, 0, 0, None),
            "a ring": (1, 1, 0, 1, 0, 0, 0, None), "large circle": (1, 1, 1, 0, 1, 0, 0, None),
            "the square alone": (0, 0, 0, 0, 0, 0, 0, None), "swapped places": (1, 1, 1, 1, 1, 1, 0, 0)}
    for k, values in want.items():
        for field, value in zip(fields, values):
            assert (np.isnan(got[k][field]) if value is None else got[k][field] == value), (k, field)
    assert got["right"]["captions_naming_a_size"] == 1 and got["right"]["relation_captions"] == 1
    both = attribute_accuracy([right, readings["a ring"]], [caption, caption])
    assert both["colours"] == 1.0 and both["shapes"] == 0.5 and both["exact"] == 0.5


def test_exact_patches_give_every_patch_its_own_code_most_frequent_first():
    from minivl.recipes.dalle import ExactPatches

    train, evals = make_dalle_data(n_train=60, n_eval=4, seed=2)
    book = ExactPatches(train.images, patch=2)
    x = pixels(train.images)
    flat = x.reshape(60, 3, 16, 2, 16, 2).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 12)
    distinct, counts = np.unique(flat, axis=0, return_counts=True)
    assert book.grid == (16, 16) and book.K == len(distinct)
    np.testing.assert_array_equal(book.decode_codes(book.encode_codes(x)), x)  # exact on its own renders
    codes = book.encode_codes(x).reshape(-1)
    used = np.bincount(codes, minlength=book.K)
    assert np.all(np.diff(used) <= 0) and used[0] == counts.max()  # code 0 the commonest patch (black)
    assert np.all(book.centroids[0] == 0)
    unseen = pixels(evals["held_out_pairs"].images)  # a new patch takes its nearest seen patch's code
    back = book.decode_codes(book.encode_codes(unseen))
    assert np.abs(back - unseen).mean() < 0.02


def test_code_entropy_separates_what_a_code_shows_from_its_context():
    from minivl.recipes.dalle import code_entropy

    rng = np.random.default_rng(0)
    images = np.zeros((40, 4, 4, 3), np.uint8)  # 2 x 2 grid of 2 x 2 patches
    images[:, :2, :2] = rng.choice([0, 200], 40)[:, None, None, None]  # cell 0: black or grey
    lookup = (images[:, ::2, ::2, 0] > 0).astype(int)  # (40, 2, 2): the code is the patch
    exact = code_entropy(lookup, images, 2)
    assert exact["code_given_patch"] == pytest.approx(0.0, abs=1e-12)
    assert exact["patch_given_code"] == pytest.approx(0.0, abs=1e-12)
    assert exact["distinct_patches"] == 2 and exact["distinct_codes"] == 2
    by_position = lookup + 2 * (np.arange(4).reshape(1, 2, 2) % 2) * (lookup == 0)  # black: code by column
    context = code_entropy(by_position, images, 2)
    left, right = 40 + np.sum(images[:, 0, 0, 0] == 0), 80  # black patches in columns 0 and 1
    q = np.array([left, right]) / (left + right)
    # a black patch's code is its column: H(column | black) nats, paid by the black fraction of patches
    assert context["code_given_patch"] == pytest.approx((left + right) / 160 * -(q * np.log(q)).sum(), rel=1e-9)
    assert context["background_code_given_position"] == pytest.approx(0.0, abs=1e-12)
    assert context["background_codes"] == 2 and context["patch_given_code"] == pytest.approx(0.0, abs=1e-12)


def test_confusion_matches_each_phrase_to_the_object_of_its_colour():
    from minivl.recipes.dalle import confusion

    # circle 0, square 1, triangle 2, diamond 3, ring 5; red 0, green 1, blue 2
    def caption(*phrases):
        return Caption("list", tuple(Description(shape=s, colour=c) for s, c in phrases))

    def scene(*objects):
        return Scene(32, tuple(ShapeObject(s, c, 0, (0, 0, 6, 6)) for s, c in objects))

    captions = [caption((0, 0)), caption((0, 0)), caption((0, 1)), caption((1, 2)), caption((1, 2)),
                caption((2, 0)),
                caption((0, 0), (1, 2)),  # red circle and blue square
                caption((0, 0), (1, 2)),
                caption((3, 1), (5, 1)),  # two green phrases: cannot be told apart, skipped
                Caption("list", (Description(colour=1),))]  # "a green shape": no shape named
    reads = [scene((0, 0)), scene((2, 0)), scene((5, 2)), scene((1, 2)), scene(), scene((1, 0), (2, 0)),
             scene((2, 2), (5, 0)),  # the blue one a triangle, the red one a ring
             scene((1, 0), (1, 1)),  # no blue object: the square phrase unmatched
             scene((3, 1), (5, 1)), scene((3, 1))]
    shape = confusion(reads, captions, "shape")
    want = np.zeros((6, 7), int)
    want[0, [0, 2, 5]] = 1  # one-phrase circles drawn as circle, triangle, ring (any colour)
    want[0, 5] += 1  # the red circle of the pair drawn as a ring
    want[0, 1] = 1  # ... and as a square in the other
    want[1, 1], want[1, 6], want[1, 2], want[1, 6] = 1, 1, 1, 2  # square; nothing; triangle; no blue
    want[2, 6] = 1  # a triangle drawn as two objects
    np.testing.assert_array_equal(shape["matrix"], want)
    assert shape["phrases"] == 10 and shape["matched"] == pytest.approx(7 / 10)
    assert shape["accuracy"] == pytest.approx(2 / 7)  # the diagonal over the matched objects
    colour = confusion(reads, captions, "colour")  # matched by shape: the green pair enters now
    assert colour["phrases"] == 13 and colour["matrix"][1][1] == 3  # the two green ones and "a green shape"
    assert colour["matrix"][1][2] == 1 and colour["matrix"][0][6] == 3  # blue for green; 3 red unmatched
    assert np.isnan(confusion([], [], "shape")["accuracy"])


def test_probe_captions_ask_for_one_trained_pair_each_and_the_probe_reads_every_sample(run, dvae):
    from minivl.data.shapes import DEFAULT_HELD_OUT_PAIRS
    from minivl.recipes.dalle import probe_captions, single_object_probe

    captions = probe_captions()
    assert len(captions) == (36 - len(DEFAULT_HELD_OUT_PAIRS)) * 2 and len({c.text for c in captions}) == 60
    assert "a small red circle." in [c.text for c in captions] and "a large cyan ring." in [c.text for c in captions]
    assert "a small red triangle." not in [c.text for c in captions]  # a held-out pair
    r, _ = run
    seen = []

    def reader(images):  # every sample read as one small red circle
        seen.append(len(images))
        return [Scene(32, (ShapeObject(0, 0, 0, (0, 0, 6, 6)),))] * len(images)

    probe = single_object_probe(r["model"], r["bpe"], dvae, reader, n=2, seed=0)
    assert seen == [120] and probe["captions"] == 60 and probe["candidates"] == 2
    assert probe["exact"] == pytest.approx(1 / 60)  # only "a small red circle." is read as asked
    shape = np.array(probe["shape"]["matrix"])
    assert shape[:, 0].sum() == 120 and shape[0, 0] == 2 * 2 * 5  # circles asked in 5 colours, 2 sizes
    assert probe["shape"]["accuracy"] == pytest.approx(20 / 120)
    assert probe["colour"]["accuracy"] == pytest.approx(sum(c.phrases[0].colour == 0 for c in captions) / 60)


def test_evaluation_reads_every_candidate_for_the_confusion_and_the_first_for_the_attributes(run, dvae):
    r, _ = run
    _, evals = r["data"][:2]
    seen = []

    def reader(images):  # candidate k of every caption read as k objects (0, 1, 2: red circles)
        seen.append(len(images))
        return [Scene(32, (ShapeObject(0, 0, 0, (0, 0, 6, 6)),) * (i % 3)) for i in range(len(images))]

    m = evaluate(r["model"], r["bpe"], dvae, {"held_out_scenes": evals["held_out_scenes"]},
                 lambda images, captions: np.zeros(len(images), bool), n_candidates=3, n_eval=4, seed=0,
                 reader=reader)["held_out_scenes"]
    assert seen == [12]  # 4 captions x 3 candidates, once
    assert m["by_attribute"]["objects"] == 0.0  # first samples: candidate 0, read as no object
    shape = m["confusion_all_candidates"]["shape"]
    one_phrase = sum(len(c.phrases) == 1 for c in evals["held_out_scenes"].structured[:4])
    assert np.array(shape["matrix"])[:, 0].sum() == one_phrase  # candidate 1 of each one-phrase caption
