"""The CLIP-guided edit (S18, minivl/recipes/clip_edit.py): the loop, its two closeness
terms, the differentiable generators, freezing, and the judge's bookkeeping."""

import numpy as np
import pytest

import minivl.functional as F
from minivl.data.dalle_pairs import caption_says, make_dalle_data
from minivl.data.digits import resize, resize_matrix
from minivl.data.shapes import Scene, ShapeObject
from minivl.models.clip import CLIP
from minivl.models.dvae import DiscreteVAE
from minivl.models.vae import VAE
from minivl.recipes import clip_edit as ce
from minivl.tensor import Tensor
from minivl.testing import gradcheck


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("n_in,n_out", [(8, 16), (8, 12), (5, 3)])
def test_resize_matrix_is_resize(interpolation, n_in, n_out):
    x = np.random.default_rng(0).random((4, n_in, n_in))
    R = resize_matrix(n_in, n_out, interpolation).astype(np.float64)
    np.testing.assert_allclose(R @ x @ R.T, resize(x, n_out, interpolation), atol=1e-6)
    with pytest.raises(ValueError, match="interpolation"):
        resize_matrix(8, 16, "cubic")


def test_code_kl_by_hand():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 2, 5, 3, 3))  # (B, K, h, w) each

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    expected = (np.exp(log_softmax(a)) * (log_softmax(a) - log_softmax(b))).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(ce.code_kl(Tensor(b), Tensor(a)).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(ce.code_kl(Tensor(a), Tensor(a)).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(ce.squared_distance(Tensor(b), Tensor(a)).numpy(),
                               ((b - a) ** 2).sum(axis=(1, 2, 3)))


def test_optimise_climbs_the_cosine_and_the_penalty_holds_it_back():
    """embed(w) = w / |w|, prompt e1, start near e2: free, w turns to e1; with a large
    lambda it stays where it started."""
    w0 = np.array([[0.05, 1.0, 0.0], [0.0, 1.0, 0.05]], np.float32)
    text = np.array([[1.0, 0, 0], [1.0, 0, 0]], np.float32)

    def embed(w):
        return F.l2_normalize(w, axis=-1)

    free = ce.optimise(w0, embed, text, ce.squared_distance, 0.0, steps=150, lr=0.05)
    assert free["final_cosine"].min() > 0.95
    assert free["cosine"][0] < 0.1 < free["cosine"][-1]
    held = ce.optimise(w0, embed, text, ce.squared_distance, 100.0, steps=150, lr=0.05)
    assert np.abs(held["w"] - w0).max() < 0.02
    assert held["final_cosine"].max() < free["final_cosine"].min()
    with pytest.raises(ValueError, match="text must be"):
        ce.optimise(w0, embed, text[:1], ce.squared_distance, 0.0, steps=1, lr=0.1)


def _float64(*models):
    for m in models:
        for p in m.parameters():
            p.data = p.data.astype(np.float64)


def _tiny_digits_parts():
    vae = VAE(input_dim=64, hidden=8, latent_dim=2).eval().requires_grad_(False)
    clip = CLIP(embed_dim=8, image_size=16, patch_size=8, in_channels=1, vision_dim=16, vision_depth=1,
                vision_heads=2, vocab_size=20, context_length=8, text_dim=16, text_depth=1,
                text_heads=2).eval().requires_grad_(False)
    judge = ce.nn.MLP(64, 8, 10, activation="relu").eval().requires_grad_(False)
    prompts = np.random.default_rng(2).standard_normal((10, 8)).astype(np.float32)
    prompts /= np.linalg.norm(prompts, axis=1, keepdims=True)
    return {"vae": vae, "clip": clip, "judge": judge, "prompts": prompts}


def test_digit_embedder_gradient_reaches_the_latent():
    parts = _tiny_digits_parts()
    _float64(parts["vae"], parts["clip"])
    w = Tensor(np.random.default_rng(3).standard_normal((2, 2)), requires_grad=True)
    assert gradcheck(ce.digit_embedder(parts["vae"], parts["clip"]), w, atol=1e-6)


def test_code_embedder_gradient_reaches_the_logits():
    dvae = DiscreteVAE(image_size=8, vocab_size=5, widths=(4, 8), codebook_dim=6).eval().requires_grad_(False)
    clip = CLIP(embed_dim=8, image_size=8, patch_size=4, vision_dim=16, vision_depth=1, vision_heads=2,
                vocab_size=20, context_length=8, text_dim=16, text_depth=1, text_heads=2).eval()
    _float64(dvae, clip.requires_grad_(False))
    logits = Tensor(np.random.default_rng(4).standard_normal((2, 5, 4, 4)), requires_grad=True)
    assert gradcheck(ce.code_embedder(dvae, clip), logits, atol=1e-6)


def test_edit_digits_leaves_the_frozen_models_alone():
    parts = _tiny_digits_parts()
    before = {name: [p.data.copy() for p in parts[name].parameters()] for name in ("vae", "clip")}
    x = np.random.default_rng(5).random((6, 64)).astype(np.float32)
    labels, targets = np.arange(6), (np.arange(6) + 3) % 10
    out = ce.edit_digits(parts, x, labels, targets, lam=0.1, steps=5, lr=0.1)
    for name in ("vae", "clip"):
        for p, old in zip(parts[name].parameters(), before[name]):
            assert p.grad is None  # frozen: no gradient was computed for it
            np.testing.assert_array_equal(p.data, old)  # and it did not move
    assert out["w"].shape == (6, 2) and out["edited"].shape == (6, 64) and len(out["cosine"]) == 5
    assert np.abs(out["w"] - out["w_start"]).max() > 0  # the latent did move
    blind = ce.edit_digits(parts, x, labels, targets, lam=0.1, steps=0, lr=0.1, from_prior=True)
    np.testing.assert_array_equal(blind["w"], 0.0)  # text only starts from the prior's centre


def test_recolour_edits_change_one_colour_and_the_prompt_names_the_new_scene():
    pairs = make_dalle_data(n_train=1, seed=0, n_eval=40)[1]["held_out_scenes"]
    edits = ce.recolour_edits(pairs, 30, seed=0)
    assert len(edits["index"]) == 30
    for i, scene, target, caption in zip(edits["index"], edits["scenes"], edits["targets"], edits["captions"]):
        assert scene is pairs.scenes[i]
        old, new = scene.objects[0], target.objects[0]
        assert new.colour not in {o.colour for o in scene.objects}  # a colour the scene lacks
        assert (new.shape, new.size, new.box) == (old.shape, old.size, old.box)
        assert target.objects[1:] == scene.objects[1:]  # nothing else changes
        assert caption_says(caption, target) and not caption_says(caption, scene)


def test_judge_edits_bookkeeping():
    """A fake judge whose readings are given: happened / kept / exact counted by hand."""

    class FakeJudge:
        config = type("C", (), {"grid": 2})()
        cell = 16

        def __init__(self, readings):
            self.readings = readings

        def predict(self, images):
            return self.readings[id(images)]

        def matches(self, images, targets):
            return np.array([True, False])

    obj = ShapeObject(0, 0, 1, (16, 0, 28, 12))  # top right: cell 1
    other = ShapeObject(1, 2, 1, (0, 16, 12, 28))  # bottom left: cell 2
    target = Scene(32, (ShapeObject(0, 4, 1, obj.box), other))
    edits = {"targets": [target, target]}
    start, edited = np.zeros(1), np.zeros(2)
    none = np.full((2, 4), -100)
    readings = {
        id(start): (np.array([[0, 1, 2, 0]] * 2), np.array([[-100, 0, 2, -100]] * 2), none),
        # edit 0: recoloured (4) and the rest kept; edit 1: recoloured, but cell 2 turned blue (2 -> 3)
        id(edited): (np.array([[0, 1, 2, 0], [0, 1, 2, 0]]), np.array([[-100, 4, 2, -100], [-100, 4, 3, -100]]),
                     none),
    }
    got = ce.judge_edits(FakeJudge(readings), edited, start, edits)
    assert got == {"happened": 1.0, "kept": 0.5, "exact": 0.5}
    readings[id(edited)][1][0, 1] = 0  # edit 0 keeps its old colour
    assert ce.judge_edits(FakeJudge(readings), edited, start, edits)["happened"] == 0.5


def test_digits_parts_are_trained_then_frozen():
    parts = ce.digits_parts(seed=0, vae_steps=3, clip_steps=3, judge_steps=3, progress=False)
    for name in ("vae", "clip", "judge"):
        assert not parts[name].training
        assert not any(p.requires_grad for p in parts[name].parameters()), name
    assert parts["prompts"].shape == (10, parts["clip"].config.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(parts["prompts"], axis=1), 1.0, rtol=1e-5)
    assert 0.0 <= parts["judge_accuracy"] <= 1.0


def test_main_keeps_the_parts_it_did_not_run(tmp_path, monkeypatch):
    out = tmp_path / "edit.json"
    out.write_text('{"command": "first", "runs": {"0": {"shapes": {"rows": {"kept": 1}}}}}')
    monkeypatch.setattr(ce, "digits_study", lambda **kw: {"rows": {"seed": kw["seed"]}, "_runs": {}})
    monkeypatch.setattr(ce, "digits_figure", lambda study: type("F", (), {"savefig": lambda *a, **k: None})())
    ce.main(["--out", str(out), "--seeds", "0", "1", "--parts", "digits", "--no-progress"])
    import json

    got = json.loads(out.read_text())
    assert got["runs"]["0"]["shapes"] == {"rows": {"kept": 1}}  # untouched
    assert got["runs"]["0"]["digits"]["rows"] == {"seed": 0} and got["runs"]["1"]["digits"]["rows"] == {"seed": 1}
    assert got["commands"][0] == "first" and "--parts digits" in got["commands"][-1]
