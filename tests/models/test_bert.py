"""BERT: shapes, the padding mask, BERT's 80/10/10 masking, the tied MLM decoder,
gradients, checkpoints, and parity with Hugging Face's BertForMaskedLM / BertModel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl import nn
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.models.bert import BERT, IGNORE_INDEX, mask_tokens, mlm_accuracy, mlm_loss
from minivl.optim import AdamW
from minivl.tensor import Tensor, no_grad

V = 50


def tiny(**overrides):
    options = dict(vocab_size=V, max_len=16, dim=16, depth=2, num_heads=2, dropout=0.0)
    return BERT(**{**options, **overrides})


def test_shapes():
    model = tiny()
    ids = np.random.default_rng(0).integers(0, V, (3, 7))
    hidden = model(ids)
    assert hidden.shape == (3, 7, 16)
    assert model.pool(hidden).shape == (3, 16)
    assert model.mlm(hidden).shape == (3, 7, V)
    with nn.record(model) as rec:
        final = model(ids)
    assert len(rec.hidden) == 3 and np.array_equal(rec.hidden[-1].data, final.data)
    assert len(rec.weights) == 2 and rec.weights[0].shape == (3, 2, 7, 7)


def test_bad_inputs_raise():
    model = tiny()
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        model(np.full((1, 4), V))
    with pytest.raises(ValueError, match="max_len"):
        model(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match="key_padding_mask"):
        model(np.zeros((2, 4), dtype=np.int64), key_padding_mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="segment_ids"):
        model(np.zeros((2, 4), dtype=np.int64), segment_ids=np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"segment_ids must lie in \[0, 2\)"):
        model(np.zeros((2, 4), dtype=np.int64), segment_ids=np.full((2, 4), 2))
    # the contract at the door: ids and masks are ndarrays, said once, by name
    with pytest.raises(ValueError, match="ids must be a NumPy integer array.*Tensor; pass ids.numpy"):
        model(Tensor(np.zeros((2, 4), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"key_padding_mask must be a NumPy array of the shape of ids \(2, 4\)"):
        model(np.zeros((2, 4), dtype=np.int64), key_padding_mask=[[True] * 4] * 2)


def test_padding_does_not_leak_into_real_positions():
    model = tiny().eval()
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (2, 9))
    segments = rng.integers(0, 2, (2, 9))
    mask = np.ones((2, 9), bool)
    mask[0, 5:] = False
    mask[1, 8:] = False
    other = ids.copy()
    other[~mask] = rng.integers(0, V, (~mask).sum())  # change only the padded tokens
    other_segments = segments.copy()
    other_segments[~mask] = 1 - segments[~mask]
    with no_grad():
        a = model(ids, segments, mask).data
        b = model(other, other_segments, mask).data
        unmasked = model(other, other_segments).data
    np.testing.assert_allclose(a[mask], b[mask], atol=1e-6)
    assert np.abs(a[mask] - unmasked[mask]).max() > 1e-3  # without the mask padding does leak


def test_every_token_sees_the_future():
    """BERT is bidirectional: changing the last token changes the first output."""
    model = tiny().eval()
    ids = np.random.default_rng(2).integers(0, V, (1, 6))
    other = ids.copy()
    other[0, -1] = (ids[0, -1] + 1) % V
    with no_grad():
        assert np.abs(model(ids).data[0, 0] - model(other).data[0, 0]).max() > 1e-4


# --------------------------------------------------------------------------- masking


def test_mask_tokens_statistics():
    rng = np.random.default_rng(0)
    vocab, mask_id, specials = 1000, 3, [0, 1, 2, 3]
    ids = rng.integers(4, vocab, (400, 250))
    ids[:, 0], ids[:, -1], ids[::3, -40:] = 1, 2, 0  # [CLS] ... [SEP], and padding in some rows
    inputs, labels = mask_tokens(ids, specials, vocab, mask_id, np.random.default_rng(1))
    special = np.isin(ids, specials)
    chosen = labels != IGNORE_INDEX
    assert not chosen[special].any()
    assert np.array_equal(inputs[special], ids[special])
    assert np.array_equal(labels[chosen], ids[chosen])
    assert np.array_equal(inputs[~chosen], ids[~chosen])
    n = (~special).sum()  # about 80,000 candidates: 5 sigma of the rate is about 0.006
    assert abs(chosen.sum() / n - 0.15) < 0.006
    masked = chosen & (inputs == mask_id)
    kept = chosen & (inputs == ids)
    swapped = chosen & ~masked & ~kept
    for part, expected in ((masked, 0.8), (swapped, 0.1), (kept, 0.1)):
        assert abs(part.sum() / chosen.sum() - expected) < 0.015
    assert not np.isin(inputs[swapped], specials).any()  # random tokens are ordinary ones


def test_mask_tokens_id_probs_set_the_rate_of_exactly_the_named_ids():
    """Named ids at their own rate (0 and 1 included), every other id at ``prob``, the same
    80/10/10 split for both; with no named ids the draws are the plain ones."""
    rng = np.random.default_rng(0)
    vocab, mask_id, specials = 1000, 3, [0, 1, 2, 3]
    ids = rng.integers(8, vocab, (400, 250))
    spots = rng.random(ids.shape)
    ids[spots < 0.3], ids[(spots >= 0.3) & (spots < 0.35)], ids[(spots >= 0.35) & (spots < 0.4)] = 5, 6, 7
    ids[:, 0], ids[:, -1] = 1, 2
    rates = {5: 0.6, 6: 0.0, 7: 1.0}
    inputs, labels = mask_tokens(ids, specials, vocab, mask_id, np.random.default_rng(1), id_probs=rates)
    chosen = labels != IGNORE_INDEX
    assert abs(chosen[ids == 5].mean() - 0.6) < 0.01  # about 30,000 fives
    assert not chosen[ids == 6].any() and chosen[ids == 7].all()
    others = ~np.isin(ids, [5, 6, 7, *specials])
    assert abs(chosen[others].mean() - 0.15) < 0.006
    assert not chosen[np.isin(ids, specials)].any()
    for part in (chosen & (ids == 5), chosen & others):
        masked, kept = (inputs[part] == mask_id).mean(), (inputs[part] == ids[part]).mean()
        assert abs(masked - 0.8) < 0.015 and abs(kept - 0.1) < 0.015 and abs(1 - masked - kept - 0.1) < 0.015
    plain = mask_tokens(ids, specials, vocab, mask_id, np.random.default_rng(1))
    for a, b in zip(plain, mask_tokens(ids, specials, vocab, mask_id, np.random.default_rng(1), id_probs={})):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="id_probs"):
        mask_tokens(ids, specials, vocab, mask_id, rng, id_probs={5: 1.5})


@settings(deadline=None, max_examples=20)
@given(st.integers(1, 6), st.integers(1, 30), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_mask_tokens_invariants(B, N, prob, seed):
    rng = np.random.default_rng(seed)
    vocab, specials = 20, [0, 1, 2]
    ids = rng.integers(0, vocab, (B, N))
    inputs, labels = mask_tokens(ids, specials, vocab, 2, rng, prob=prob)
    chosen = labels != IGNORE_INDEX
    assert inputs.shape == labels.shape == ids.shape
    assert not (chosen & np.isin(ids, specials)).any()
    assert np.array_equal(np.where(chosen, ids, IGNORE_INDEX), labels)
    assert np.array_equal(inputs[~chosen], ids[~chosen])
    if prob == 1.0:
        assert np.array_equal(chosen, ~np.isin(ids, specials))


def test_mlm_loss_and_accuracy_count_only_chosen_positions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    labels = np.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 3], labels[1, 4] = 4, 0, int(logits[1, 4].argmax())
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([logp[0, 1, 4], logp[1, 3, 0], logp[1, 4, labels[1, 4]]])
    assert np.isclose(mlm_loss(Tensor(logits), labels).item(), expected, atol=1e-5)
    hits = [logits[0, 1].argmax() == 4, logits[1, 3].argmax() == 0, True]
    assert mlm_accuracy(Tensor(logits), labels) == pytest.approx(np.mean(hits))


# --------------------------------------------------------------------------- weights


def test_decoder_is_tied_to_word_embeddings():
    model = tiny()
    emb, dec = model.embeddings.token.weight, model.mlm.decoder.weight
    assert dec is emb and np.shares_memory(dec.data, emb.data)
    assert sum(p is emb for p in model.parameters()) == 1  # trained once, not twice
    assert model.mlm.decoder.bias is not None  # its own output bias
    ids = np.random.default_rng(0).integers(0, V, (2, 6))
    opt = AdamW(model.parameters(), lr=1e-2)
    mlm_loss(model.mlm_logits(ids), ids).backward()
    opt.step()
    assert model.mlm.decoder.weight is model.embeddings.token.weight


def test_gradients_reach_every_parameter():
    model = tiny(dropout=0.1)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (3, 8))
    segments = np.repeat([[0] * 4 + [1] * 4], 3, axis=0)
    hidden = model(ids, segments, np.ones((3, 8), bool))
    loss = mlm_loss(model.mlm(hidden), ids) + model.pool(hidden).sum()  # the pooler needs a loss too
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert np.isfinite(p.grad).all() and np.abs(p.grad).max() > 0, name


def test_checkpoint_round_trip(tmp_path):
    model = tiny().eval()
    ids = np.random.default_rng(0).integers(0, V, (2, 6))
    path = tmp_path / "bert.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(BERT, path).eval()
    assert loaded.config == model.config
    assert loaded.mlm.decoder.weight is loaded.embeddings.token.weight
    with no_grad():
        np.testing.assert_array_equal(loaded.mlm_logits(ids).data, model.mlm_logits(ids).data)


# --------------------------------------------------------------------------- Hugging Face


def _hf_bert(cls_name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=61, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=40, max_position_embeddings=20, type_vocab_size=2,
    )
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():  # larger random weights than the 0.02 init, so the logits are O(1)
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "LayerNorm" in name else 0.15))
    return torch, config, model


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 61, (3, 11))
    segments = rng.integers(0, 2, (3, 11))
    mask = np.ones((3, 11), bool)
    mask[1, 7:] = False
    mask[2, 3:] = False
    return ids, segments, mask


@pytest.mark.oracle
def test_matches_hf_bert_for_masked_lm():
    torch, config, hf = _hf_bert("BertForMaskedLM")
    ids, segments, mask = _inputs()
    with torch.no_grad():
        expected = hf(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                      attention_mask=torch.tensor(mask.astype(np.int64))).logits.numpy()
    model = BERT.from_hf(hf.state_dict(), config)  # eval mode: dropout 0.1 would change the logits
    assert not any(m.training for m in model.modules())
    with no_grad():
        ours = model.mlm_logits(ids, segments, mask).data
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(ours[mask], expected[mask], atol=1e-4)
    assert model.mlm.decoder.weight is model.embeddings.token.weight


@pytest.mark.oracle
def test_matches_hf_bert_model_hidden_states_and_pooler():
    torch, config, hf = _hf_bert("BertModel")
    ids, segments, mask = _inputs()
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                 attention_mask=torch.tensor(mask.astype(np.int64)))
    model = BERT.from_hf(hf.state_dict(), config)
    assert not any(m.training for m in model.modules())
    with no_grad():
        hidden = model(ids, segments, mask)
        pooled = model.pool(hidden).data
    np.testing.assert_allclose(hidden.data[mask], out.last_hidden_state.numpy()[mask], atol=1e-4)
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), atol=1e-4)


@pytest.mark.oracle
def test_from_hf_names_what_is_missing():
    torch, config, hf = _hf_bert("BertForMaskedLM")
    state = {k: v for k, v in hf.state_dict().items() if "layer.1.output.dense" not in k}
    with pytest.raises(ValueError, match=r"encoder\.blocks\.1\.mlp\.fc2\.weight"):
        BERT.from_hf(state, config)


# --------------------------------------------------------------------------- corpus and recipe


@pytest.fixture(scope="module")
def corpus():
    from minivl.data.corpus import build_corpus

    return build_corpus(n_train=300, n_val=40, vocab_size=320, progress=False)


def test_sentence_pairs_are_cls_a_sep_b_sep(corpus):
    from minivl.data.corpus import pair_batches, sentence_pairs

    tok, pad = corpus.tokenizer, corpus.special("[PAD]")
    cls, sep = corpus.special("[CLS]"), corpus.special("[SEP]")
    pairs = sentence_pairs(corpus.val, tok)
    for (a, b), ids, seg in zip(corpus.val, pairs["ids"], pairs["segment_ids"]):
        cut = int(np.flatnonzero(ids == sep)[0])
        assert ids[0] == cls and ids[-1] == sep and (ids == sep).sum() == 2
        assert tok.decode(ids[1:cut]) == a and tok.decode(ids[cut + 1: -1]) == " " + b
        assert np.array_equal(seg, (np.arange(len(ids)) > cut).astype(seg.dtype))
    batch = next(pair_batches(pairs, 8, pad, seed=0))
    lengths = batch["key_padding_mask"].sum(1)
    assert batch["ids"].shape == batch["segment_ids"].shape == (8, lengths.max())
    assert (batch["ids"][~batch["key_padding_mask"]] == pad).all()
    assert (batch["ids"][np.arange(8), lengths - 1] == sep).all()


def test_train_bert_raises_mlm_accuracy_and_checkpoints(corpus, tmp_path, capsys):
    from minivl.recipes.bert import fill_mask, train_bert

    result = train_bert(corpus, steps=60, batch_size=16, dim=32, num_heads=2, lr=5e-3,
                        eval_every=30, progress=False, out=tmp_path)
    m = result["metrics"]
    assert [e["step"] for e in result["history"].evals] == [0, 30, 60]
    # 60 steps get a tiny BERT only past uniform guessing (loss ln 320 = 5.8) to word
    # frequencies; the accuracy climbs later (see `minivl bert train`).
    assert m["mlm_loss"] < m["mlm_loss_start"] - 1.5 and m["mlm_accuracy"] > m["mlm_accuracy_start"]
    guesses = fill_mask(result["model"], corpus.tokenizer, "a [MASK] circle.", "one [MASK] in the image.")
    assert len(guesses) == 2 and all(len(g) == 5 for g in guesses)
    assert _run_command(["bert", "fill", "--checkpoint", str(tmp_path), "a red [MASK]."]) == 0
    assert "a red [MASK]." in capsys.readouterr().out


def _run_command(argv):
    """Run ``minivl bert ...`` through this command's own parser (not every command's)."""
    import argparse

    from minivl.commands import bert as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)
