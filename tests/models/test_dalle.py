"""The DALL-E prior (``minivl/models/dalle.py``): the sparse masks against masks built
cell by cell, pad tokens, the vocabulary each position may predict, the 1/8 : 7/8
loss against a hand computation, and cached sampling equal to uncached sampling; classifier-free
guidance (a later addition): scale 1 and 0 against plain sampling, the mixed logits against
teacher-forced ones, and caption dropout."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.io import load, load_metadata, save
from minivl.models.dalle import DALLE, attention_mask, layer_kinds

TINY = dict(text_vocab=20, text_len=4, image_vocab=7, grid_h=2, grid_w=3, dim=16, depth=2, num_heads=2)


def reference_mask(kind, L, h, w, kernel=3):
    """The mask written from the picture: who may each image query look at, cell by cell."""
    n = h * w
    N = L + n
    mask = np.zeros((N, N), dtype=bool)
    for q in range(N):
        for k in range(q + 1):
            if q < L + 1 or k < L + 1 or k == q or kind == "full":
                mask[q, k] = True  # caption, <soi>, itself; plain causal everywhere for "full"
                continue
            (rq, cq), (rk, ck) = divmod(q - L, w), divmod(k - L - 1, w)  # predicted cell, held cell
            if kind == "row":
                mask[q, k] = (rq * w + cq) - (rk * w + ck) <= w
            elif kind == "column":
                mask[q, k] = cq == ck
            else:
                mask[q, k] = abs(rq - rk) <= kernel // 2 and abs(cq - ck) <= kernel // 2
    return mask


@pytest.mark.parametrize("kind", ["full", "row", "column", "conv"])
@pytest.mark.parametrize("L, h, w", [(2, 2, 3), (3, 3, 3), (1, 4, 2), (3, 16, 16)])  # 16 x 16: the default grid
def test_masks_match_the_cell_by_cell_masks(kind, L, h, w):
    np.testing.assert_array_equal(attention_mask(kind, L, h, w), reference_mask(kind, L, h, w))


def test_row_mask_by_hand():
    # L = 1 caption token, a 2 x 2 grid: positions t0, <soi>, c0, c1, c2 (N = 5).
    # <soi> predicts c0; the position holding c0 predicts c1, ... Row: the previous 2 cells.
    expected = np.array([[1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0],
                         [1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0],
                         [1, 1, 0, 1, 1]], dtype=bool)  # predicting c3: c1 and c2, not c0
    np.testing.assert_array_equal(attention_mask("row", 1, 2, 2), expected)
    conv = attention_mask("conv", 1, 2, 2, kernel=1)  # a 1 x 1 window: no earlier cell at all
    np.testing.assert_array_equal(conv, np.tril(np.eye(5, dtype=bool)) | (np.arange(5)[None] < 2)
                                  & np.tri(5, dtype=bool))


def test_sparse_schedule_follows_the_paper():
    assert layer_kinds("sparse", 6) == ["row", "column", "row", "row", "row", "conv"]
    assert layer_kinds("full", 2) == ["full", "full"]
    with pytest.raises(ValueError, match="attention"):
        layer_kinds("diagonal", 2)


def test_each_caption_position_has_its_own_pad_token():
    m = DALLE(**TINY)
    text = m.pad_text([[5, 6, 7], [8], []])
    V = TINY["text_vocab"]
    np.testing.assert_array_equal(text, [[5, 6, 7, V + 3], [8, V + 1, V + 2, V + 3], [V, V + 1, V + 2, V + 3]])
    assert m.soi == V + TINY["text_len"] and m.image_start == m.soi + 1
    with pytest.raises(ValueError, match="text_len"):
        m.pad_text([[1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="BPE ids"):
        m.pad_text([[V]])


def _streams(m, seed=0, B=3):
    rng = np.random.default_rng(seed)
    text = m.pad_text([rng.integers(0, m.config.text_vocab, int(k)) for k in rng.integers(0, 5, B)])
    codes = rng.integers(0, m.config.image_vocab, (B, m.config.grid_h, m.config.grid_w))
    return text, codes, m.stream(text, codes)


@pytest.mark.parametrize("attention", ["full", "sparse"])
def test_each_position_predicts_only_its_own_vocabulary(attention):
    m = DALLE(**TINY, attention=attention)
    text, codes, ids = _streams(m)
    logits = m(ids[:, :-1]).data  # (B, L + n, V_all)
    L = m.config.text_len
    assert logits.shape == (3, L + m.n_image, m.vocab_size)
    finite = np.isfinite(logits)
    assert finite[:, :L, :m.soi].all() and not finite[:, :L, m.soi:].any()
    assert finite[:, L:, m.image_start:].all() and not finite[:, L:, :m.image_start].any()
    # even a head that prefers caption ids can only sample codes at image positions
    m.head.weight.data[: m.soi] += 50.0 * m.head.weight.data[: m.soi].sum(-1, keepdims=True).__abs__() + 5
    sampled = m.generate(text, generator=np.random.default_rng(0))
    assert sampled.shape == codes.shape and sampled.min() >= 0 and sampled.max() < m.config.image_vocab


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_is_one_eighth_text_plus_seven_eighths_image():
    m = DALLE(**TINY)
    _, _, ids = _streams(m, seed=1)
    logits = m(ids[:, :-1]).data.astype(np.float64)
    L = m.config.text_len
    text_part = _log_softmax(logits[:, :L - 1, :m.soi])  # caption positions over BPE + pads
    text_nll = -np.take_along_axis(text_part, ids[:, 1:L, None], -1).mean()
    image_part = _log_softmax(logits[:, L:, m.image_start:])  # image positions over the K codes
    image_nll = -np.take_along_axis(image_part, ids[:, L + 1:, None] - m.image_start, -1).mean()
    text, image = m.losses(ids)
    np.testing.assert_allclose([text.item(), image.item()], [text_nll, image_nll], rtol=1e-5)
    np.testing.assert_allclose(m.loss(ids).item(), text_nll / 8 + 7 * image_nll / 8, rtol=1e-5)
    # the full logits' -inf entries leave the same numbers: log-softmax over everything agrees
    full = _log_softmax(logits[:, L:])
    np.testing.assert_allclose(-np.take_along_axis(full, ids[:, L + 1:, None], -1).mean(), image_nll, rtol=1e-6)


def test_code_nll_is_the_image_loss_code_by_code():
    m = DALLE(**TINY)
    _, _, ids = _streams(m, seed=2)
    logits = m(ids[:, :-1]).data.astype(np.float64)
    L = m.config.text_len
    image_part = _log_softmax(logits[:, L:, m.image_start:])  # (B, n, K)
    want = -np.take_along_axis(image_part, ids[:, L + 1:, None] - m.image_start, -1)[..., 0]
    got = m.code_nll(ids)
    assert got.shape == (len(ids), m.n_image)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got.mean(), m.losses(ids)[1].item(), rtol=1e-5)
    with pytest.raises(ValueError, match="full streams"):
        m.code_nll(ids[:, :-1])


@pytest.mark.parametrize("positions", ["flat", "axial"])
def test_loss_gradient_reaches_every_weight(positions):
    m = DALLE(**TINY, attention="sparse", image_positions=positions)
    _, _, ids = _streams(m, seed=2)
    m.loss(ids).backward()
    for name, p in m.named_parameters():
        if name == "transformer.embeddings.token.weight":
            continue  # ids never fed (the last code, unused pads) get no gradient
        assert p.grad is not None and np.abs(p.grad).sum() > 0, name


@pytest.mark.parametrize("positions", ["flat", "axial"])
@pytest.mark.parametrize("attention", ["full", "sparse", "conv"])
@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3), (0.0, None)])
def test_cached_sampling_equals_uncached(attention, temperature, top_k, positions):
    m = DALLE(**TINY, attention=attention, image_positions=positions)
    text, _, _ = _streams(m, seed=3)
    a, la = m.generate(text, temperature, top_k, use_cache=True, generator=np.random.default_rng(7),
                       return_logits=True)
    b, lb = m.generate(text, temperature, top_k, use_cache=False, generator=np.random.default_rng(7),
                       return_logits=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(la, lb, rtol=1e-4, atol=1e-5)
    # and the logits each code was drawn from are the teacher-forced logits of the finished stream
    full = m(m.stream(text, a)[:, :-1]).data[:, m.config.text_len:, m.image_start:]
    np.testing.assert_allclose(la, full, rtol=1e-4, atol=1e-5)


def test_cached_sampling_equals_uncached_on_a_16x16_grid():
    """The default dVAE writes a 16 x 16 grid: 256 image positions; "sparse" at depth 6 runs
    row, column and conv masks of width 16 (the shorter grids above test "full"); axial positions."""
    m = DALLE(**{**TINY, "grid_h": 16, "grid_w": 16, "depth": 6}, attention="sparse", image_positions="axial")
    text, _, _ = _streams(m, seed=4, B=2)
    a, la = m.generate(text, 1.0, None, use_cache=True, generator=np.random.default_rng(1), return_logits=True)
    b = m.generate(text, 1.0, None, use_cache=False, generator=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 16, 16)
    full = m(m.stream(text, a)[:, :-1]).data[:, m.config.text_len:, m.image_start:]
    np.testing.assert_allclose(la, full, rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_and_checkpoints_round_trip(tmp_path):
    m = DALLE(**TINY, attention="sparse")
    text, codes, ids = _streams(m)
    with pytest.raises(ValueError, match="codes must have shape"):
        m.stream(text, codes[:, :1])
    with pytest.raises(ValueError, match="codes must lie"):
        m.stream(text, codes + m.config.image_vocab)
    with pytest.raises(ValueError, match="full streams"):
        m.loss(ids[:, :-1])
    with pytest.raises(ValueError, match="text must be"):
        m.generate(text[:, :2])
    with pytest.raises(ValueError, match="attention"):
        DALLE(**TINY, attention="diagonal")
    save_checkpoint(m, tmp_path / "prior.safetensors")
    back = load_checkpoint(DALLE, tmp_path / "prior.safetensors")
    assert back.config == m.config
    np.testing.assert_allclose(back(ids[:, :-1]).data, m(ids[:, :-1]).data)


def test_axial_positions_are_code_plus_row_plus_column():
    """Cell (r, c)'s token: its code's vector + row[r] + column[c]; caption slots and <soi>
    keep their 1-D vectors; the same from any start (the cached path feeds one token)."""
    m = DALLE(**{**TINY, "grid_h": 3, "grid_w": 4}, image_positions="axial")
    _, _, ids = _streams(m, seed=5)
    e = m.transformer.embeddings
    got = e(ids[:, :-1]).data  # (B, L + n, D)
    L, w = m.config.text_len, m.config.grid_w
    token, text_pos, row, col = (t.weight.data for t in (e.token, e.text_position, e.row, e.column))
    for p in range(m.max_len):
        if p <= L:
            want = token[ids[:, p]] + text_pos[p]
        else:
            r, c = divmod(p - L - 1, w)  # the cell this position holds
            want = token[ids[:, p]] + row[r] + col[c]
        np.testing.assert_allclose(got[:, p], want, rtol=1e-5, atol=1e-7, err_msg=f"position {p}")
        np.testing.assert_allclose(e(ids[:, p:p + 1], start=p).data[:, 0], want, rtol=1e-5, atol=1e-7)
    assert "transformer.embeddings.position.weight" not in dict(m.named_parameters())
    with pytest.raises(ValueError, match="image_positions"):
        DALLE(**TINY, image_positions="diagonal")


def test_checkpoints_saved_before_the_option_load_as_flat(tmp_path):
    """A config written without ``image_positions`` (the priors saved so far) rebuilds the
    flat-position model it was trained as; an axial one round-trips as axial."""
    import json

    old = DALLE(**TINY)
    path = tmp_path / "old.safetensors"
    save_checkpoint(old, path)
    meta = load_metadata(path)
    config = json.loads(meta["config"])
    del config["image_positions"]
    save(load(path), path, metadata={**meta, "config": json.dumps(config)})
    _, _, ids = _streams(old)
    back = load_checkpoint(DALLE, path)
    assert back.config.image_positions == "flat"
    np.testing.assert_allclose(back(ids[:, :-1]).data, old(ids[:, :-1]).data)
    axial = DALLE(**TINY, image_positions="axial")
    save_checkpoint(axial, tmp_path / "axial.safetensors")
    back = load_checkpoint(DALLE, tmp_path / "axial.safetensors")
    assert back.config.image_positions == "axial"
    np.testing.assert_allclose(back(ids[:, :-1]).data, axial(ids[:, :-1]).data)


# classifier-free guidance (a later addition, not DALL-E 1)


def test_guidance_one_is_plain_sampling_and_zero_is_the_empty_caption():
    m = DALLE(**TINY, image_positions="axial")
    text, _, _ = _streams(m, seed=6, B=4)
    plain = m.generate(text, 0.8, None, generator=np.random.default_rng(3))
    np.testing.assert_array_equal(m.generate(text, 0.8, None, generator=np.random.default_rng(3), guidance=1.0),
                                  plain)
    empty, le = m.generate(m.empty_text(4), 0.8, None, generator=np.random.default_rng(3), return_logits=True)
    zero, lz = m.generate(text, 0.8, None, generator=np.random.default_rng(3), return_logits=True, guidance=0.0)
    np.testing.assert_array_equal(zero, empty)  # token for token: the caption plays no part
    np.testing.assert_allclose(lz, le, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.empty_text(2), m.pad_text([[], []]))
    with pytest.raises(ValueError, match="guidance"):
        m.generate(text, guidance=float("nan"))


@pytest.mark.parametrize("attention", ["full", "sparse"])
@pytest.mark.parametrize("guidance, temperature, top_k", [(3.0, 1.0, None), (5.0, 0.7, 3), (-1.0, 0.0, None)])
def test_guided_sampling_mixes_caption_and_empty_caption_logits(attention, guidance, temperature, top_k):
    """Cached guided sampling = uncached, and each code is drawn from u + s (c - u), where c and
    u are the teacher-forced logits of the finished codes after the caption and after the empty one."""
    m = DALLE(**TINY, attention=attention, image_positions="axial")
    text, _, _ = _streams(m, seed=8)
    a, la = m.generate(text, temperature, top_k, generator=np.random.default_rng(2), return_logits=True,
                       guidance=guidance)
    b, lb = m.generate(text, temperature, top_k, use_cache=False, generator=np.random.default_rng(2),
                       return_logits=True, guidance=guidance)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(la, lb, rtol=1e-4, atol=1e-5)
    L, k0 = m.config.text_len, m.image_start
    c = m(m.stream(text, a)[:, :-1]).data[:, L:, k0:].astype(np.float64)  # (B, n, K)
    u = m(m.stream(m.empty_text(len(text)), a)[:, :-1]).data[:, L:, k0:].astype(np.float64)
    np.testing.assert_allclose(la, u + guidance * (c - u), rtol=1e-4, atol=1e-4)
    assert not np.allclose(c, u)  # the check above can tell the two apart


def test_caption_dropout_replaces_exactly_the_captions_at_the_rate():
    m = DALLE(**TINY)
    rng = np.random.default_rng(0)
    N = 4000
    text = m.pad_text([rng.integers(0, m.config.text_vocab, int(k)) for k in rng.integers(1, 4, N)])
    ids = m.stream(text, rng.integers(0, m.config.image_vocab, (N, m.config.grid_h, m.config.grid_w)))
    before = ids.copy()
    out = m.drop_captions(ids, 0.3, np.random.default_rng(1))
    np.testing.assert_array_equal(ids, before)  # the input is not changed
    L = m.config.text_len
    np.testing.assert_array_equal(out[:, L:], ids[:, L:])  # <soi> and the codes are kept
    dropped = (out[:, :L] != ids[:, :L]).any(axis=1)
    np.testing.assert_array_equal(out[dropped, :L], m.empty_text(int(dropped.sum())))
    np.testing.assert_array_equal(out[~dropped, :L], ids[~dropped, :L])
    assert abs(dropped.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / N)  # the rate, within 4 standard errors
    np.testing.assert_array_equal(m.drop_captions(ids, 0.0, np.random.default_rng(1)), ids)
    np.testing.assert_array_equal(m.drop_captions(ids, 1.0, np.random.default_rng(1))[:, :L], m.empty_text(N))
    with pytest.raises(ValueError, match="caption dropout"):
        m.drop_captions(ids, 1.5, np.random.default_rng(1))
