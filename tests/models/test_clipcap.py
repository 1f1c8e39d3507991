"""ClipCap (S18): the prefix is read as word embeddings, the loss covers the caption only,
greedy = beam search of width 1, and BLEU-4 against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minivl.metrics import bleu
from minivl.models.clipcap import ClipCap
from minivl.random import manual_seed
from minivl.tensor import no_grad


def tiny():
    manual_seed(0)
    return ClipCap(embed_dim=8, prefix_len=3, hidden=16, vocab_size=20, max_len=16, dim=16, depth=1,
                   num_heads=2)


def test_prefix_is_read_as_word_embeddings():
    m = tiny()
    e = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    ids = np.array([[1, 5, 6], [1, 7, 8]])
    emb = m.lm.transformer.embeddings.token.weight.data
    # make the prefix exactly the embeddings of tokens 2, 3, 4
    m.fc2.weight.data[...] = 0
    m.fc2.bias.data[...] = emb[[2, 3, 4]].reshape(-1)
    with no_grad():
        np.testing.assert_allclose(m(e, ids).numpy(), m.lm(np.concatenate([np.tile([2, 3, 4], (2, 1)), ids], 1)).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_loss_is_the_caption_cross_entropy():
    m = tiny()
    e = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    ids = np.array([[1, 5, 6, 1], [1, 7, 1, 0]])
    labels = np.array([[-100, 5, 6, 1], [-100, 7, 1, -100]])
    with no_grad():
        logits = m(e, ids).numpy()[:, 2:-1]  # position k - 1 + t predicts ids[t]
        loss = float(m.loss(e, ids, labels).item())
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.mean([lp[b, t, labels[b, t]] for b in range(2) for t in range(4) if labels[b, t] >= 0])
    assert loss == pytest.approx(want, rel=1e-5)


def test_beam_of_one_is_greedy_and_wider_beams_score_at_least_as_well():
    m = tiny()
    e = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    greedy = m.greedy(e, start_id=1, stop_id=0, max_tokens=6)
    for i in range(3):
        assert m.beam_search(e[i], 1, 0, beams=1, max_tokens=6) == greedy[i]
    # GPT's convention: one <|endoftext|> id both starts and stops a caption
    never = next(t for t in range(19, 0, -1) if all(t not in g for g in greedy))
    same = m.greedy(e, start_id=never, stop_id=never, max_tokens=6)
    for i in range(3):
        assert same[i] == m.beam_search(e[i], never, never, beams=1, max_tokens=6)
    assert max(map(len, same)) > 1  # the start token does not end the caption

    def score(seq, i):
        ids, total = [1], 0.0
        for t in seq + ([0] if len(seq) < 6 else []):
            total += m._log_probs(e[i:i + 1], np.array([ids]))[0, t]
            ids.append(t)
        return total

    for i in range(3):
        assert score(m.beam_search(e[i], 1, 0, beams=4, max_tokens=6), i) >= score(greedy[i], i) - 1e-6


def test_bleu4_against_a_hand_computation():
    cand = "the cat sat on the mat".split()
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    # clipped n-gram hits: 1-grams 5/6 (the x2, cat, on, mat), 2-grams 3/5, 3-grams 1/4, 4-grams 0/3
    assert bleu([cand], [refs]) == 0.0
    # with a second sentence the 4-gram precision is non-zero: hand count
    cand2, refs2 = "a small red circle".split(), ["a small red circle".split()]
    p = [(5 + 4) / (6 + 4), (3 + 3) / (5 + 3), (1 + 2) / (4 + 2), (0 + 1) / (3 + 1)]
    want = math.exp(sum(math.log(x) for x in p) / 4)  # c = 10 = r (6 closest to 6, 4): no penalty
    assert bleu([cand, cand2], [refs, refs2]) == pytest.approx(want)
    # brevity penalty: a perfect but short candidate
    short = bleu([["a", "small", "red", "circle"]], [[["a", "small", "red", "circle", "here"]]])
    assert short == pytest.approx(math.exp(1 - 5 / 4) * math.exp(np.mean(np.log([4 / 4, 3 / 3, 2 / 2, 1 / 1]))))
    # clipping: "the the the the" against "the cat": 1-gram precision 1/4, not 4/4 (BLEU-1 only)
    assert bleu([["the"] * 4], [[["the", "cat"]]], n=1) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="reference"):
        bleu([cand], [])
