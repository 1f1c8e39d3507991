"""GPT: shapes, the causal mask, the next-token loss, the tied head, gradients,
the key/value cache (same logits, same generated tokens), sampling filters,
checkpoints, and parity with Hugging Face's GPT2LMHeadModel (logits and greedy
continuations)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl import nn
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.gpt import GPT
from minivl.models.text import CausalTextEncoder, sample_next
from minivl.optim import AdamW
from minivl.tensor import no_grad

V = 40


def tiny(**overrides):
    options = dict(vocab_size=V, max_len=12, dim=16, depth=2, num_heads=2)
    return GPT(**{**options, **overrides})


def ids_of(shape, seed=0):
    return np.random.default_rng(seed).integers(0, V, shape)


def test_shapes_and_hidden_states():
    model = tiny()
    ids = ids_of((3, 7))
    assert model(ids).shape == (3, 7, V)
    with nn.record(model) as rec:
        final = model.transformer(ids)
    assert final.shape == (3, 7, 16) and len(rec.hidden) == 3  # embeddings + one per block


def test_bad_inputs_raise():
    model = tiny()
    with pytest.raises(ValueError, match="max_len=12"):
        model(ids_of((1, 13)))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        model(np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match=r"key_padding_mask must have the shape of ids \(1, 4\), got \(1, 3\)"):
        model(ids_of((1, 4)), np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="ids must be a NumPy integer array"):
        model([[1, 2, 3]])
    with pytest.raises(ValueError, match="temperature"):
        sample_next(np.zeros((1, 4)), temperature=-1)


@settings(deadline=None, max_examples=10)
@given(st.integers(1, 11), st.integers(0, 2**16))
def test_causal_mask_hides_the_future(t, seed):
    """Changing tokens after position t leaves the logits at positions <= t unchanged."""
    model = tiny().eval()
    ids = ids_of((2, 12), seed)
    other = ids.copy()
    other[:, t:] = ids_of((2, 12 - t), seed + 1)
    with no_grad():
        a, b = model(ids).data, model(other).data
    np.testing.assert_allclose(a[:, :t], b[:, :t], atol=1e-6)


def test_loss_is_next_token_cross_entropy():
    model = tiny().eval()
    ids = ids_of((2, 9))
    with no_grad():
        logits = model(ids[:, :-1]).data.astype(np.float64)
        loss = model.loss(ids).item()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, ids[:, 1:, None], -1).mean()
    assert np.isclose(loss, expected, atol=1e-5)
    mask = np.ones((2, 9), bool)
    mask[1, 5:] = False  # padded targets are skipped
    with no_grad():
        padded = model.loss(ids, mask).item()
    kept = -np.concatenate([np.take_along_axis(logp[0], ids[0, 1:, None], -1).ravel(),
                            np.take_along_axis(logp[1, :4], ids[1, 1:5, None], -1).ravel()])
    assert np.isclose(padded, kept.mean(), atol=1e-5)


def test_head_is_tied_to_token_embeddings():
    model = tiny()
    emb = model.transformer.embeddings.token.weight
    assert model.lm_head.weight is emb and np.shares_memory(model.lm_head.weight.data, emb.data)
    assert sum(p is emb for p in model.parameters()) == 1
    opt = AdamW(model.parameters(), lr=1e-2)
    model.loss(ids_of((2, 8))).backward()
    opt.step()
    assert model.lm_head.weight is model.transformer.embeddings.token.weight


def test_gradients_reach_every_parameter():
    model = tiny(dropout=0.1)
    model.loss(ids_of((4, 12))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert np.isfinite(p.grad).all() and np.abs(p.grad).max() > 0, name


# --------------------------------------------------------------------------- key/value cache


def test_cached_logits_equal_full_forward():
    model = tiny().eval()
    ids = ids_of((2, 10))
    caches = model.transformer.new_caches()
    with no_grad():
        full = model(ids).data
        steps = [model(ids[:, :4], caches=caches).data]  # a prompt, then one token at a time
        steps += [model(ids[:, t: t + 1], caches=caches).data for t in range(4, 10)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert caches[0]["k"].shape == (2, 2, 10, 8)  # (B, heads, positions seen, head dim)


@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=1.0),
                                     dict(temperature=0.7, top_k=5), dict(temperature=1.3, top_p=0.8)])
def test_generate_with_cache_equals_without(options):
    model = tiny()
    prompt = ids_of((3, 4))
    runs = [model.generate(prompt, 14, use_cache=cache, generator=np.random.default_rng(7), **options)
            for cache in (True, False)]  # 4 + 14 > max_len=12: the window slides too
    assert runs[0].shape == (3, 18)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0][:, :4], prompt)
    assert model.training  # generate restores the mode


def test_generate_stops_when_every_row_hit_the_stop_id():
    model = tiny()
    greedy = model.generate(ids_of((1, 3)), 5, temperature=0)
    stop = int(greedy[0, 3])  # the first generated token
    assert model.generate(ids_of((1, 3)), 5, temperature=0, stop_id=stop).shape == (1, 4)


# --------------------------------------------------------------------------- sampling


def test_sample_next_filters():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 30)) * 3
    assert np.array_equal(sample_next(logits, temperature=0), logits.argmax(-1))
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    for _ in range(50):
        draw = sample_next(logits, top_k=5, generator=rng)
        assert all(draw[i] in top5[i] for i in range(4))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    order = np.argsort(-p, axis=-1)
    for _ in range(50):
        draw = sample_next(logits, top_p=0.5, generator=rng)
        for i in range(4):
            rank = int(np.flatnonzero(order[i] == draw[i])[0])
            assert p[i, order[i, :rank]].sum() < 0.5  # the tokens above it had not reached p


def test_sample_next_follows_the_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample_next(np.repeat(logits, 4000, 0), generator=rng) for _ in range(5)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.01)  # 20,000 draws: ~3 sigma
    hot = np.concatenate([sample_next(np.repeat(logits, 4000, 0), temperature=0.5, generator=rng)
                          for _ in range(5)])  # T = 0.5 squares the probabilities
    sharp = np.array([0.5, 0.3, 0.15, 0.05]) ** 2
    np.testing.assert_allclose(np.bincount(hot, minlength=4) / len(hot), sharp / sharp.sum(), atol=0.01)


# --------------------------------------------------------------------------- reuse and checkpoints


def test_causal_text_encoder_is_the_body_of_gpt():
    model = tiny().eval()
    assert isinstance(model.transformer, CausalTextEncoder)
    body = CausalTextEncoder(V, 12, 16, 2, 2)
    body.load_state_dict({k.removeprefix("transformer."): v for k, v in model.state_dict().items()
                          if k.startswith("transformer.")})
    ids = ids_of((2, 5))
    with no_grad():
        hidden = body(ids).data
        np.testing.assert_allclose(hidden @ model.lm_head.weight.data.T, model(ids).data, atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    model = tiny().eval()
    path = tmp_path / "gpt.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(GPT, path).eval()
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.transformer.embeddings.token.weight
    ids = ids_of((2, 6))
    with no_grad():
        np.testing.assert_array_equal(loaded(ids).data, model(ids).data)
    from minivl.models.bert import BERT

    with pytest.raises(ValueError, match="GPT"):
        load_checkpoint(BERT, path)


# --------------------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def hf_gpt2():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=53, n_positions=24, n_embd=24, n_layer=2, n_head=3,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger random weights than the 0.02 init, so the logits are O(1)
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if ".ln_" in name else 0.15))
    return torch, config, model


@pytest.mark.oracle
def test_matches_hf_gpt2_logits(hf_gpt2):
    torch, config, hf = hf_gpt2
    ids = np.random.default_rng(0).integers(0, 53, (3, 17))
    with torch.no_grad():
        expected = hf(torch.tensor(ids)).logits.numpy()
    assert np.abs(expected).max() > 1.0
    numpy_state = {k: v.numpy() for k, v in hf.state_dict().items()}
    for cfg in (config, config.to_dict()):  # a config object, or the plain dict the issue asks for
        model = GPT.from_hf(numpy_state, cfg)  # eval mode, dropout off, as from_pretrained
        assert not any(m.training for m in model.modules())
        with no_grad():
            ours = model(ids).data
        np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.oracle
def test_matches_hf_gpt2_greedy_continuation(hf_gpt2):
    torch, config, hf = hf_gpt2
    prompt = np.random.default_rng(1).integers(1, 53, (2, 5))
    with torch.no_grad():
        expected = hf.generate(torch.tensor(prompt), do_sample=False, max_new_tokens=12,
                               min_new_tokens=12, pad_token_id=0).numpy()
    model = GPT.from_hf(hf.state_dict(), config)
    np.testing.assert_array_equal(model.generate(prompt, 12, temperature=0), expected)


# --------------------------------------------------------------------------- corpus and recipe


@pytest.fixture(scope="module")
def corpus():
    from minivl.data.corpus import build_corpus

    return build_corpus(n_train=300, n_val=40, vocab_size=320, progress=False)


def test_lm_stream_and_windows(corpus):
    from minivl.data.corpus import lm_batches, lm_stream

    tok = corpus.tokenizer
    eot = corpus.special("<|endoftext|>")
    stream = lm_stream(corpus.val, tok)
    assert (stream == eot).sum() == len(corpus.val) and stream[-1] == eot
    assert tok.decode(stream[: int(np.argmax(stream == eot))]) == " ".join(corpus.val[0])
    batch = next(lm_batches(stream, 5, 16, np.random.default_rng(0)))
    assert batch.shape == (5, 17)
    for row in batch:  # every window is a contiguous slice of the stream
        starts = [i for i in range(len(stream) - 16) if np.array_equal(stream[i: i + 17], row)]
        assert starts


def test_train_gpt_lowers_perplexity_and_checkpoints(corpus, tmp_path, capsys):
    from minivl.recipes.gpt import train_gpt

    result = train_gpt(corpus, steps=100, batch_size=8, block_size=16, dim=32, num_heads=2,
                       eval_every=50, progress=False, out=tmp_path, prompts=("a",))
    m = result["metrics"]
    assert m["val_perplexity_start"] > 0.5 * corpus.vocab_size  # about uniform at step 0
    assert m["val_perplexity"] < 0.1 * m["val_perplexity_start"]
    assert len(result["samples_start"]) == len(result["samples_end"]) == 3
    assert _run_command(["gpt", "sample", "--checkpoint", str(tmp_path), "--prompt", "a", "-n", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def _run_command(argv):
    """Run ``minivl gpt ...`` through this command's own parser (not every command's)."""
    import argparse

    from minivl.commands import gpt as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)
