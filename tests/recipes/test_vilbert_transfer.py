"""The transfer heads of ViLBERT (``minivl/recipes/vilbert_transfer.py``): each loss against
a hand computation in NumPy, the metrics on logits with known answers (VQA soft scores,
the top region's IoU, Q->AR = both right, FOIL's word), and a tiny fine-tuning run that
beats chance. The encoder here is a small stand-in with ViLBERT's ``encode`` signature, so
these tests do not depend on the pretrained model."""

from __future__ import annotations

import numpy as np
import pytest

from minivl import functional as F
from minivl import nn
from minivl.data import ShapesWorld
from minivl.data.corpus import build_corpus
from minivl.data.vilbert_tasks import TASKS, gather, make_task
from minivl.models.vilbert import Streams
from minivl.recipes.vilbert_transfer import (
    TransferModel,
    chance,
    choice_loss,
    evaluate,
    finetune,
    foil_loss,
    item_scores,
    make_transfer_model,
    refexp_loss,
    retrieval_recall_at_1,
    summarise,
    task_loss,
    token_foil_loss,
    vqa_loss,
)
from minivl.tensor import Tensor, no_grad
from tests.data.test_vilbert_tasks import OneHotRegions


class TinyEncoder(nn.Module):
    """Bag of words for the text, one Linear per region, and each region gated by the text:
    the smallest model with ViLBERT's ``encode`` outputs that can tie words to regions."""

    def __init__(self, vocab_size, region_dim, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.region = nn.Linear(region_dim + 5, dim)
        self.gate = nn.Linear(dim, dim)
        self.pool_t, self.pool_v = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def encode(self, ids, text_mask, feats, locs, region_mask):
        m = Tensor(text_mask[..., None].astype(np.float32))
        text = self.embed(ids) * m  # (B, T, D)
        bag = text.sum(1) / Tensor(np.maximum(text_mask.sum(1, keepdims=True), 1).astype(np.float32))
        regions = self.region(Tensor(np.concatenate([feats, locs], -1)))  # (B, 1+R, D)
        image = regions * F.tanh(self.gate(bag)).unsqueeze(1)  # (B, 1+R, D): a bilinear match
        rm = Tensor(region_mask[..., None].astype(np.float32))
        pooled = (image * rm).sum(1) / Tensor(region_mask.sum(1, keepdims=True).astype(np.float32))
        return Streams(text, image, F.relu(self.pool_t(bag)), F.relu(self.pool_v(pooled)))


@pytest.fixture(scope="module")
def tokenizer():
    return build_corpus(seed=0).tokenizer


@pytest.fixture(scope="module")
def data(tokenizer):
    world = ShapesWorld(seed=0)
    return {t: make_task(t, world, tokenizer, OneHotRegions(), sizes=(60, 30, 30)) for t in TASKS}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _bce(x, t):
    return -(t * np.log(_sigmoid(x)) + (1 - t) * np.log(1 - _sigmoid(x)))


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_vqa_loss_is_soft_score_bce_summed_over_answers():
    rng = np.random.default_rng(0)
    logits, scores = rng.normal(size=(3, 5)), np.array([[1, 1 / 3, 0, 0, 0], [0, 0, 1, 0, 0], [2 / 3, 1, 0, 0, 0]])
    expected = _bce(logits, scores).sum(1).mean()
    np.testing.assert_allclose(vqa_loss(Tensor(logits), scores).item(), expected, rtol=1e-10)


def test_refexp_loss_averages_bce_over_real_regions_only():
    logits = np.array([[5.0, 0.3, -1.0, 9.0], [-2.0, 1.5, 0.2, -0.4]])
    iou = np.array([[0, 0.8, 0, 0], [0, 0, 1.0, 0]])
    mask = np.array([[True, True, True, False], [True, True, True, True]])  # [IMG] and padding out
    real = [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    expected = np.mean([_bce(logits[b, r], iou[b, r]) for b, r in real])
    np.testing.assert_allclose(refexp_loss(Tensor(logits), iou, mask).item(), expected, rtol=1e-10)


def test_four_way_softmax_loss():
    logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
    labels = np.array([0, 3])
    expected = -_log_softmax(logits)[[0, 1], labels].mean()
    np.testing.assert_allclose(choice_loss(Tensor(logits), labels).item(), expected, rtol=1e-10)


def test_foil_loss_adds_the_word_loss_on_foiled_captions_only():
    detect = np.array([[1.0, -1.0], [0.2, 0.7], [0.0, 3.0]])
    words = np.array([[0.5, 2.0, 1.0, 9.0], [1.0, 0.0, -1.0, 0.5], [0.3, 0.3, 4.0, 6.0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]], bool)  # row 2: its 6.0 is padding
    label, word = np.array([0, 1, 1]), np.array([-1, 3, 2])
    word_nll = [-_log_softmax(words[1])[3], -_log_softmax(words[2, :3])[2]]
    expected = -_log_softmax(detect)[[0, 1, 2], label].mean() + np.mean(word_nll)
    got = foil_loss(Tensor(detect), Tensor(words), label, word, mask).item()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # a word logit on padding (9.0 in row 0) must not matter: row 0 is true, and masked anyway
    only_true = foil_loss(Tensor(detect[:1]), Tensor(words[:1]), label[:1], word[:1], mask[:1]).item()
    np.testing.assert_allclose(only_true, -_log_softmax(detect[:1])[0, 0], rtol=1e-10)


def test_metrics_on_known_answers():
    vqa = item_scores("vqa", np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]]),
                      {"scores": np.array([[1, 1 / 3, 0], [0, 1, 0]])})
    np.testing.assert_allclose(vqa["accuracy"], [1 / 3, 0])  # the soft score of the answer picked
    ref = item_scores("refexp", np.array([[9.0, 1.0, 2.0, 5.0], [9.0, 3.0, 1.0, 0.0]]),
                      {"iou": np.array([[0, 0, 0.7, 0], [0, 0.9, 0, 0]]),
                       "region_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)})
    np.testing.assert_array_equal(ref["accuracy"], [1, 1])  # [IMG] and padding are never picked
    vcr = item_scores("vcr", np.array([[1, 0, 0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 1, 0, 0, 0],
                                       [0, 1, 0, 0, 0, 1, 0, 0]], float),
                      {"answer": np.array([0, 0, 0]), "rationale": np.array([1, 1, 1])})
    np.testing.assert_array_equal(vcr["q_a"], [1, 1, 0])
    np.testing.assert_array_equal(vcr["qa_r"], [1, 0, 1])
    np.testing.assert_array_equal(vcr["q_ar"], [1, 0, 0])  # Q->AR: both right
    foil = item_scores("foil", np.array([[2, 0, 0, 1, 5], [0, 2, 0, 4, 0], [0, 2, 3, 0, 1]], float),
                       {"label": np.array([0, 1, 0]), "word": np.array([-1, 1, -1]),
                        "text_mask": np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], bool)})
    np.testing.assert_array_equal(foil["accuracy"], [1, 1, 0])
    assert foil["word"][1] == 1 and np.isnan(foil["word"][[0, 2]]).all()  # scored on foils only
    summary = summarise({"accuracy": np.array([1.0, 0.0, 1.0, 1.0])}, np.array(["a", "b", "a", "b"]))
    assert summary == {"accuracy": 0.75, "accuracy/a": 1.0, "accuracy/b": 0.5, "n": 4}


def test_every_head_gives_its_logits_and_a_finite_loss(data, tokenizer):
    for task in TASKS:
        split = data[task]["train"]
        encoder = TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim)
        model = make_transfer_model(task, encoder, split)
        batch = gather(split, [0, 1, 2])
        logits = model(batch)
        width = {"vqa": 26, "refexp": batch["feats"].shape[1], "retrieval": 4, "vcr": 8, "nlvr": 2,
                 "foil": 2 + batch["ids"].shape[1]}[task]
        assert logits.shape == (3, width), task
        loss = task_loss(model, batch)
        loss.backward()
        head = model.word_head if task == "foil" else model.head  # FOIL's default: the token head
        assert np.isfinite(loss.item()) and head.parameters()[0].grad is not None
        m = evaluate(task, model, data[task]["val"])
        assert m["n"] == len(data[task]["val"]) and 0 <= next(iter(m.values())) <= 1


def test_a_tiny_finetune_beats_chance(tokenizer):
    world = ShapesWorld(seed=0)
    data = make_task("refexp", world, tokenizer, OneHotRegions(), sizes=(400, 50, 150))
    encoder = TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim)
    run = finetune("refexp", encoder, data, steps=300, batch_size=32, lr=1e-2, progress=False)
    accuracy, floor = run["metrics"]["test"]["accuracy"], chance("refexp", data["test"])
    assert 0.5 < floor < 0.7  # one over the objects of each test scene (1 to 3)
    assert accuracy > floor + 0.1, (accuracy, floor)  # seed 0 reaches 0.78 against 0.60
    assert run["metrics"]["test"]["accuracy/attribute"] > 0.75


def test_recall_at_1_and_bad_arguments(data, tokenizer):
    split = data["retrieval"]["test"]
    model = make_transfer_model("retrieval", TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim), split)
    r = retrieval_recall_at_1(model, split.scenes, split.regions, tokenizer, 5, np.random.default_rng(0))
    assert r["queries"] == 5 and r["candidates"] == len(split.scenes) and 0 <= r["recall@1"] <= 1
    with pytest.raises(ValueError, match="task"):
        TransferModel("captioning", model.encoder, (32, 32, 32))
    with pytest.raises(ValueError, match="splits"):
        finetune("vqa", model.encoder, data["refexp"], steps=1)


def test_train_scores_read_the_first_training_items(data, tokenizer):
    """``train_scores=n``: the metrics of the first n training items, as ``evaluate`` gives them."""
    from minivl.recipes.vilbert_transfer import first_items

    split = data["vcr"]["train"]
    head = first_items(split, 5)
    whole, part = gather(split, np.arange(5)), gather(head, np.arange(5))
    assert len(head) == 5 and all(np.array_equal(whole[k], part[k]) for k in whole if k != "passes")
    run = finetune("vcr", TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim), data["vcr"], steps=2,
                   batch_size=4, progress=False, train_scores=5)
    assert run["metrics"]["train"] == evaluate("vcr", run["model"], head)
    assert run["metrics"]["train"]["n"] == 5


def test_token_foil_loss_is_one_softmax_over_cls_and_the_words():
    cls = np.array([[1.5], [0.2], [-1.0]])
    words = np.array([[7.0, 0.5, 2.0, -1e9], [7.0, 1.0, -1.0, 0.5], [7.0, 0.3, 4.0, -1e9]])  # col 0: [CLS] as a word
    label, word = np.array([0, 1, 1]), np.array([-1, 3, 2])
    rows = np.concatenate([cls, words[:, 1:]], axis=1)  # position 0 = correct, t = word t
    expected = -_log_softmax(rows)[[0, 1, 2], [0, 3, 2]].mean()
    got = token_foil_loss(Tensor(cls), Tensor(words), label, word).item()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_token_foil_head_detects_with_cls_against_the_words(data, tokenizer):
    """The detection pair is [CLS]'s score and the log-sum-exp of the real words' scores (not
    [CLS], not padding), so its softmax is the mass of "correct" against "some word is foiled"."""
    split = data["foil"]["train"]
    batch = gather(split, np.arange(6))
    model = make_transfer_model("foil", TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim), split, "token")
    assert not hasattr(model, "head")
    logits = model(batch).numpy()
    text = model.encoder.encode(batch["ids"], batch["text_mask"], batch["feats"], batch["locs"],
                                batch["region_mask"]).text  # (B, T, D)
    scores = model.word_head(text).numpy()[..., 0]  # (B, T)
    real = batch["text_mask"].copy()
    real[:, 0] = False
    np.testing.assert_allclose(logits[:, 0], scores[:, 0], rtol=1e-6)
    lse = [np.log(np.exp(scores[b][real[b]]).sum()) for b in range(len(scores))]
    np.testing.assert_allclose(logits[:, 1], lse, rtol=1e-5)
    assert (logits[:, 2:][~real] < -1e8).all()  # [CLS] and padding never chosen as the word
    loss = task_loss(model, batch).item()
    rows = np.concatenate([scores[:, :1], np.where(real, scores, -1e9)[:, 1:]], axis=1)
    target = np.where(batch["label"] == 1, batch["word"], 0)
    np.testing.assert_allclose(loss, -_log_softmax(rows)[np.arange(len(rows)), target].mean(), rtol=1e-5)


def test_regions_foil_head_adds_some_region_fits_to_cls(data, tokenizer):
    """``foil_head="regions"``: the token head's [CLS] score plus the log-sum-exp of a Linear(1) over
    the real region tokens (not [IMG], not padding); the words' scores are the token head's."""
    split = data["foil"]["train"]
    batch = gather(split, np.arange(6))
    model = make_transfer_model("foil", TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim), split, "regions")
    streams = model.encoder.encode(batch["ids"], batch["text_mask"], batch["feats"], batch["locs"],
                                   batch["region_mask"])
    cls = model.word_head(streams.text).numpy()[:, 0, 0]  # (B,)
    fits = model.region_head(streams.visual).numpy()[..., 0]  # (B, 1+R)
    real = batch["region_mask"].copy()
    real[:, 0] = False
    lse = np.array([np.log(np.exp(fits[b][real[b]]).sum()) for b in range(len(fits))])
    logits = model(batch).numpy()
    np.testing.assert_allclose(logits[:, 0], cls + lse, rtol=1e-5, atol=1e-6)
    token = make_transfer_model("foil", model.encoder, split, "token")
    token.word_head = model.word_head
    np.testing.assert_allclose(logits[:, 1:], token(batch).numpy()[:, 1:], rtol=1e-6)  # the words alike
    loss = task_loss(model, batch).item()
    rows = np.concatenate([logits[:, :1], logits[:, 3:]], axis=1)  # correct, then words 1..T-1
    target = np.where(batch["label"] == 1, batch["word"], 0)
    np.testing.assert_allclose(loss, -_log_softmax(rows)[np.arange(len(rows)), target].mean(), rtol=1e-5)


def test_foil_head_linear_mlp_or_token(data, tokenizer):
    split = data["foil"]["train"]
    batch = gather(split, [0, 1, 2])
    for kind, layer in (("linear", nn.Linear), ("mlp", nn.MLP), ("token", None)):
        model = make_transfer_model("foil", TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim), split, kind)
        assert layer is None or isinstance(model.head, layer)
        assert model(batch).shape == (3, 2 + batch["ids"].shape[1])
    with pytest.raises(ValueError, match="foil_head"):
        make_transfer_model("foil", model.encoder, split, "bilinear")


def test_vcr_scores_answers_and_rationales_apart_each_at_its_own_length(data, tokenizer):
    """VCR's answer passes are read apart from its longer rationale passes, each padded to its own
    longest text (``pass_subset``): fewer text tokens, the same eight scores as one pass over the
    whole batch padded to the longest rationale (a real ViLBERT, eval mode, so padding is only masked)."""
    from minivl.models.vilbert import ViLBERT, ViLBERTConfig
    from minivl.recipes.vilbert_transfer import encoder_outputs, pass_subset

    split = data["vcr"]["train"]
    encoder = ViLBERT(ViLBERTConfig(vocab_size=tokenizer.vocab_size, feat_dim=OneHotRegions.dim, text_dim=32,
                                    text_mlp_dim=64, visual_dim=24, visual_mlp_dim=48, co_dim=32, pool_dim=16))
    model = make_transfer_model("vcr", encoder, split).eval()
    batch = gather(split, np.arange(6))
    answers, rationales = pass_subset(batch, 8, 0, 4), pass_subset(batch, 8, 4, 8)
    lengths = split.text_mask[:6].sum(-1)  # (6, 8)
    assert answers["ids"].shape == (24, lengths[:, :4].max()) and rationales["ids"].shape == (24, lengths[:, 4:].max())
    assert answers["ids"].shape[1] < rationales["ids"].shape[1] == batch["ids"].shape[1]
    np.testing.assert_array_equal(answers["ids"], split.ids[:6, :4, :answers["ids"].shape[1]].reshape(24, -1))
    np.testing.assert_array_equal(rationales["feats"], batch["feats"].reshape(6, 8, *batch["feats"].shape[1:])[:, 4:]
                                  .reshape(24, *batch["feats"].shape[1:]))
    with no_grad():
        split_logits = model(batch).numpy()
        fused = encoder_outputs(encoder, batch)[2]  # every pass at the longest rationale's length
        joint = np.concatenate([model.head(fused).numpy().reshape(6, 8)[:, :4],
                                model.rationale_head(fused).numpy().reshape(6, 8)[:, 4:]], 1)
    np.testing.assert_allclose(split_logits, joint, rtol=1e-4, atol=1e-5)


def test_vcr_scores_per_detail_are_the_means_over_those_items(data, tokenizer):
    """``evaluate`` adds VCR's finer groups (``detail``, ``objects``): each the mean of the item
    scores over the items of that value."""
    split = data["vcr"]["val"]
    model = make_transfer_model("vcr", TinyEncoder(tokenizer.vocab_size, OneHotRegions.dim), split)
    m = evaluate("vcr", model, split)
    with no_grad():
        per = item_scores("vcr", model(gather(split, np.arange(len(split)))).numpy(), gather(split, np.arange(len(split))))
    for key in ("detail", "objects"):
        values = split.targets[key]
        assert len(set(values.tolist())) > 1, key  # the fixture has more than one of each
        for v in set(values.tolist()):
            for name in ("q_a", "qa_r", "q_ar"):
                assert m[f"{name}/{key}={v}"] == pytest.approx(per[name][values == v].mean()), (key, v, name)
            assert m[f"n/{key}={v}"] == (values == v).sum()
    assert m["q_a/count"] == pytest.approx(per["q_a"][split.groups == "count"].mean())
