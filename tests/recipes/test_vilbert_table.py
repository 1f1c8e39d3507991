"""The transfer table (``minivl/recipes/vilbert_table.py``): bad options raise before any
work, the summary averages each cell's seeds, and tables run apart merge into one."""

from __future__ import annotations

import json

import pytest

from minivl.recipes.vilbert_table import PRETRAIN_RECIPE, merge, pretrain_recipe, run_table, summary


def _run(task, variant, seed, value):
    metric = "q_ar" if task == "vcr" else "accuracy"
    return {"task": task, "variant": variant, "seed": seed, "test": {metric: value}}


def test_summary_averages_the_seeds_of_each_cell():
    table = {"runs": [_run("vqa", "vilbert", 0, 0.8), _run("vqa", "vilbert", 1, 0.9),
                      _run("vcr", "text_only", 0, 0.1)]}
    s = summary(table)
    assert s["vqa"]["vilbert"] == {"seeds": [0.8, 0.9], "mean": pytest.approx(0.85)}
    assert s["vcr"]["text_only"]["mean"] == 0.1  # VCR's headline is Q->AR


def test_tables_run_apart_merge(tmp_path):
    parts = []
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}.json"
        task = ("nlvr", "foil")[seed]
        path.write_text(json.dumps({"seeds": [seed], "runs": [_run("nlvr", "vilbert", seed, 0.5 + seed / 10)],
                                    "tasks": [task], "chance": {task: 0.5},
                                    "load_average_start": [1.0, 1.0, 1.0], "seconds": 10.0}))
        parts.append(path)
    merged = merge(parts, tmp_path / "all.json")
    assert merged["seeds"] == [0, 1] and len(merged["runs"]) == 2
    assert merged["tasks"] == ["nlvr", "foil"] and merged["chance"] == {"nlvr": 0.5, "foil": 0.5}
    assert json.loads((tmp_path / "all.json").read_text())["summary"]["nlvr"]["vilbert"]["mean"] == 0.55


def test_a_run_measured_again_replaces_the_earlier_one(tmp_path):
    first, again = tmp_path / "a.json", tmp_path / "b.json"
    common = {"load_average_start": [1.0, 1.0, 1.0], "seconds": 1.0, "chance": {"vcr": 0.0625}}
    first.write_text(json.dumps({**common, "seeds": [0, 1], "tasks": ["vcr", "nlvr"], "schedule": {"vcr": [400, 8]},
                                 "runs": [_run("vcr", "vilbert", 0, 0.4), _run("vcr", "vilbert", 1, 0.3),
                                          _run("nlvr", "vilbert", 0, 0.7)]}))
    again.write_text(json.dumps({**common, "seeds": [1], "tasks": ["vcr"], "schedule": {"vcr": [1200, 8]},
                                 "runs": [_run("vcr", "vilbert", 1, 0.5)]}))
    merged = merge([first, again], tmp_path / "all.json")
    assert merged["summary"]["vcr"]["vilbert"] == {"seeds": [0.4, 0.5], "mean": pytest.approx(0.45)}
    assert merged["summary"]["nlvr"]["vilbert"]["seeds"] == [0.7]
    assert merged["replaced"] == [{"task": "vcr", "variant": "vilbert", "seed": 1, "from": str(first), "by": str(again)}]
    assert merged["schedule"] == {"vcr": [1200, 8]}


@pytest.mark.parametrize("bad, match", [({"tasks": ("captioning",)}, "task"),
                                        ({"variants": ("bigger_vilbert",)}, "variant")])
def test_bad_options_raise_before_any_work(bad, match):
    with pytest.raises(ValueError, match=match):
        run_table(**bad)


def test_each_word_masking_recipe_has_its_own_cache_name(monkeypatch):
    """Checkpoints pretrained with other word masking rates are never reused for each other;
    with every word at 15% the name is the one the earlier checkpoints were cached under."""
    import minivl.recipes.vilbert as recipe

    monkeypatch.setattr(recipe, "WORD_MASK_RATES", {})
    assert pretrain_recipe({}) == pretrain_recipe() == PRETRAIN_RECIPE
    both = pretrain_recipe({"size": 0.5, "relation": 0.5})
    assert both == PRETRAIN_RECIPE + "-mask-relation50-mask-size50"
    assert len({both, pretrain_recipe({"size": 0.5}), pretrain_recipe({"size": 0.3, "relation": 0.5})}) == 3
    monkeypatch.setattr(recipe, "WORD_MASK_RATES", {"size": 0.5, "relation": 0.5})
    assert pretrain_recipe() == both and pretrain_recipe({}) == PRETRAIN_RECIPE
