"""The dVAE recipe (``minivl/recipes/dvae.py``): the temperature and KL-weight
schedules, codebook usage and PSNR by hand, the data split, a two-step run
whose model the prior's API reads, and a short run that must not collapse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minivl.models.dvae import DiscreteVAE, pixels
from minivl.optim import Adam
from minivl.random import manual_seed
from minivl.recipes.dvae import beta_at, code_usage, dvae_data, make_world, psnr, tau_at, train_dvae


def test_temperature_anneals_exponentially_from_one_to_a_sixteenth():
    assert tau_at(0, 1000) == 1.0
    assert tau_at(300, 1000, anneal=0.6) == pytest.approx((1 / 16) ** 0.5)  # half way: 1/4
    assert tau_at(600, 1000, anneal=0.6) == pytest.approx(1 / 16)
    assert tau_at(999, 1000, anneal=0.6) == pytest.approx(1 / 16)  # then held
    taus = [tau_at(s, 1000) for s in range(1000)]
    assert all(a >= b for a, b in zip(taus, taus[1:]))


def test_beta_warms_up_linearly_from_zero():
    assert [beta_at(s, 2.0, 100) for s in (0, 50, 100, 500)] == [0.0, 1.0, 2.0, 2.0]
    assert beta_at(0, 2.0, 0) == 2.0


def test_code_usage_by_hand():
    codes = np.array([[0, 0], [1, 2]])  # histogram 1/2, 1/4, 1/4 over K = 5
    usage = code_usage(codes, 5)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert usage["perplexity"] == pytest.approx(math.exp(entropy))
    assert usage["dead_codes"] == 2 and usage["used_codes"] == 3
    assert code_usage(np.arange(8), 8)["perplexity"] == pytest.approx(8.0)


def test_psnr_by_hand():
    a = np.zeros((2, 3, 4, 4))
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(100)


def test_data_parts_share_no_image():
    data = dvae_data(n_train=300, n_test=50, seed=0)
    train = {im.tobytes() for im in data["train"]}
    assert not any(im.tobytes() in train for im in data["test"])
    assert data["train"].shape[1:] == (32, 32, 3)


def test_a_short_run_gives_the_prior_its_api():
    run = train_dvae(steps=2, batch_size=4, n_train=64, n_test=8, vocab_size=16, widths=(4, 8, 8),
                     codebook_dim=8, progress=False, eval_every=0)
    model, m = run["model"], run["metrics"]
    assert run["taus"][0] == 1.0 and run["betas"][0] == 0.0 and len(run["taus"]) == 2
    codes = model.encode_codes(np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32))
    assert codes.shape == (2, *model.grid) == (2, 8, 8)
    assert model.decode_codes(codes).shape == (2, 3, 32, 32)
    assert {"psnr_test", "psnr_held_out", "perplexity", "dead_codes", "load_average"} <= set(m)


def test_a_few_steps_on_a_handful_of_scenes_use_many_codes_and_beat_a_blank_picture():
    """The collapse this recipe once had (a handful of codes, black reconstructions as far
    from the images as blank ones): 80 full-batch steps on 16 scenes with the recipe's
    initialisation (zero logits bias, decoder bias at the mean pixel) and code-diversity
    penalty must spread the cells over several codes and draw more than the black background."""
    world = make_world(0)
    x = pixels(world.render(world.iid_scenes(16, "train", split="train", key="scene")))
    manual_seed(0)
    model = DiscreteVAE(image_size=32, vocab_size=32, widths=(8, 16, 16), codebook_dim=16, likelihood="mse")
    model.init_output_bias(x.mean(axis=(0, 2, 3)))
    optimizer = Adam(model.parameters(), lr=3e-3)
    steps = 80
    for s in range(steps):
        optimizer.zero_grad()
        model.loss(x, tau_at(s, steps, anneal=1.0), beta=0.0, diversity=0.01).backward()
        optimizer.step()
    usage = code_usage(model.encode_codes(x), model.K)
    blank = psnr(np.zeros_like(x), x)
    assert usage["used_codes"] >= 6, usage
    assert psnr(model.reconstruct(x), x) > blank + 1.0


def test_finetuning_the_decoder_keeps_the_codes_and_lowers_its_loss_on_them():
    """``finetune_decoder`` trains the decoder and codebook alone on the frozen encoder's argmax
    codes: the encoder, hence every code a prior was trained on, stays as it was, and the
    reconstruction error of those codes falls."""
    from minivl.recipes.dvae import encode_all, finetune_decoder

    manual_seed(0)
    images = make_world(0).render(make_world(0).iid_scenes(64, "train", split="train", key="scene"))
    model = DiscreteVAE(image_size=32, vocab_size=16, widths=(8, 16), codebook_dim=8).eval()
    encoder = {n: p.data.copy() for n, p in model.named_parameters() if not n.startswith(("dec_", "codebook"))}
    decoder = {n: p.data.copy() for n, p in model.named_parameters() if n.startswith(("dec_", "codebook"))}
    codes = encode_all(model, images)
    error = np.mean((model.decode_codes(codes) - pixels(images)) ** 2)
    history = finetune_decoder(model, images, steps=60, batch_size=16, lr=1e-2, progress=False)
    assert len(history.loss) == 60 and not model.training
    for n, p in model.named_parameters():
        if n in encoder:
            np.testing.assert_array_equal(p.data, encoder[n], err_msg=n)
    for n in ("dec_out.weight", "codebook"):
        assert not np.array_equal(dict(model.named_parameters())[n].data, decoder[n]), n
    np.testing.assert_array_equal(encode_all(model, images), codes)
    after = model.decode_codes(codes)
    assert np.mean((after - pixels(images)) ** 2) < 0.8 * error
    # fitted to each image's own codes, not to the mean picture: another image's codes decode worse
    assert np.mean((after - pixels(images)) ** 2) < 0.85 * np.mean((np.roll(after, 1, 0) - pixels(images)) ** 2)


def test_the_recipe_trains_the_per_patch_dvae_and_keeps_the_default_cache_key():
    from minivl.recipes.dvae import DEFAULTS, default_path

    run = train_dvae(steps=2, batch_size=4, n_train=64, n_test=8, vocab_size=16, widths=(8, 8, 8),
                     codebook_dim=8, progress=False, eval_every=0, encoder="patch")
    model = run["model"]
    assert model.config.encoder == "patch" and model.grid == (8, 8) and model.factor == 4
    assert run["metrics"]["encoder"] == "patch"
    x = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    y = x.copy()
    y[:, :, :4, :4] = 0.0  # only cell (0, 0)'s pixels
    changed = model.encode_codes(x) != model.encode_codes(y)
    assert not changed[:, 1:].any() and not changed[:, :, 1:].any()
    # the conv default hashes as it did before the encoder option existed (the cached dVAE stays valid)
    assert DEFAULTS["encoder"] == "conv" and default_path(0).name == "dvae-3106645398.safetensors"
