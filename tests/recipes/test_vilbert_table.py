"""The transfer table (``minivl/recipes/vilbert_table.py``): bad options raise before any
work, the summary averages each cell's seeds, and tables run apart merge into one."""

from __future__ import annotations

import json

import pytest

from minivl.recipes.vilbert import parse_pairs
from minivl.recipes.vilbert_table import (
    HELD_OUT_SCENES,
    NAMED_CO_ATTENTION,
    PRETRAIN_RECIPE,
    TRAIN_SCENES,
    merge,
    pretrain_recipe,
    run_table,
    summary,
    task_sizes,
)


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
                                    "tasks": [task], "chance": {task: 0.5}, "pretrain_steps": 3000 * (1 + seed),
                                    "co_attention_at": [[1, 0], [2 - seed, 1]],
                                    "load_average_start": [1.0, 1.0, 1.0], "seconds": 10.0}))
        parts.append(path)
    merged = merge(parts, tmp_path / "all.json")
    assert merged["seeds"] == [0, 1] and len(merged["runs"]) == 2
    assert merged["pretrain_steps_each"] == [3000, 6000]  # each part's pretraining, not only the first's
    assert merged["co_attention_at_each"] == [[[1, 0], [2, 1]], [[1, 0], [1, 1]]]  # and its placement
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
                                        ({"variants": ("bigger_vilbert",)}, "variant"),
                                        ({"sizes": (2000, 300)}, "sizes"), ({"sizes": (0, 300, 1000)}, "sizes")])
def test_bad_options_raise_before_any_work(bad, match):
    with pytest.raises(ValueError, match=match):
        run_table(**bad)


def test_each_word_masking_recipe_has_its_own_cache_name(monkeypatch):
    """Checkpoints pretrained with other word masking rates are never reused for each other;
    with every word at 15% the name is the one the earlier checkpoints were cached under."""
    import minivl.recipes.vilbert as recipe

    co = NAMED_CO_ATTENTION  # the placement's part of the name: test_each_co_attention_placement_...
    monkeypatch.setattr(recipe, "WORD_MASK_RATES", {})
    assert pretrain_recipe({}, co) == pretrain_recipe(None, co) == PRETRAIN_RECIPE
    both = pretrain_recipe({"size": 0.5, "relation": 0.5}, co)
    assert both == PRETRAIN_RECIPE + "-mask-relation50-mask-size50"
    assert len({both, pretrain_recipe({"size": 0.5}, co), pretrain_recipe({"size": 0.3, "relation": 0.5}, co)}) == 3
    monkeypatch.setattr(recipe, "WORD_MASK_RATES", {"size": 0.5, "relation": 0.5})
    assert pretrain_recipe(None, co) == both and pretrain_recipe({}, co) == PRETRAIN_RECIPE


def test_each_co_attention_placement_has_its_own_cache_name():
    """A checkpoint with its co-attention layers elsewhere is never read for another placement;
    the placement the earlier checkpoints had keeps their names."""
    named = pretrain_recipe(None, NAMED_CO_ATTENTION)
    assert "-co" not in named and named.startswith(PRETRAIN_RECIPE)
    assert pretrain_recipe(None, ((1, 0), (1, 1))) == named + "-co1011"
    assert pretrain_recipe(None, [[1, 0], [1, 1]]) == named + "-co1011"  # lists as JSON gives them
    assert len({named, pretrain_recipe(None, ((1, 0), (1, 1))), pretrain_recipe(None, ((0, 0), (1, 1)))}) == 3


def test_the_default_placement_reads_the_checkpoints_pretrained_at_it():
    """With no placement given, the cache name is the default placement's: the paper's, whose
    checkpoints were pretrained under "-co1011" before it became the default (2026-12-05)."""
    from minivl.models.vilbert import ViLBERTConfig

    assert ViLBERTConfig().co_attention_at != NAMED_CO_ATTENTION
    assert pretrain_recipe() == pretrain_recipe(None, ViLBERTConfig().co_attention_at) == pretrain_recipe(None, ((1, 0), (1, 1)))
    assert pretrain_recipe().endswith("-co1011")


@pytest.mark.parametrize("items, expected", [(["1,0", "2,1"], ((1, 0), (2, 1))), (["0,0"], ((0, 0),)),
                                             (["1,0", " 1, 1"], ((1, 0), (1, 1)))])
def test_parse_pairs(items, expected):
    assert parse_pairs(items) == expected


@pytest.mark.parametrize("bad", [["1"], ["1,0,2"], ["a,b"], ["-1,0"]])
def test_parse_pairs_rejects_what_is_not_a_pair_of_block_indices(bad):
    with pytest.raises(ValueError, match="T,V"):
        parse_pairs(bad)


def test_scene_counts_per_task_unless_given_for_all():
    for task in ("vqa", "refexp"):
        assert task_sizes(task)[0] == TRAIN_SCENES.get(task, task_sizes("refexp")[0])
        assert task_sizes(task)[1:] == HELD_OUT_SCENES
        assert task_sizes(task, (50, 20, 30)) == (50, 20, 30)
    assert task_sizes("vqa")[0] != task_sizes("refexp")[0]  # vqa has its own count, refexp the default
    for bad in ((2000, 300), (0, 300, 1000)):
        with pytest.raises(ValueError, match="sizes"):
            task_sizes("vqa", bad)


def test_merge_keeps_each_parts_scene_counts_per_task(tmp_path):
    """A part run with one count for all its tasks (a list) and one with counts per task (a
    dict) merge into counts per task, the later part winning for a task both ran."""
    common = {"load_average_start": [1.0, 1.0, 1.0], "seconds": 1.0, "seeds": [0]}
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({**common, "tasks": ["vqa", "refexp"], "sizes_scenes": [2000, 300, 1000],
                               "runs": [_run("vqa", "vilbert", 0, 0.7), _run("refexp", "vilbert", 0, 0.9)]}))
    new.write_text(json.dumps({**common, "tasks": ["vqa"], "sizes_scenes": {"vqa": [8000, 300, 1000]},
                               "runs": [_run("vqa", "vilbert", 0, 0.8)]}))
    merged = merge([old, new], tmp_path / "all.json")
    assert merged["sizes_scenes"] == {"vqa": [8000, 300, 1000], "refexp": [2000, 300, 1000]}


def test_same_setting_drops_the_seeds_left_at_an_earlier_setting(tmp_path):
    """A cell re-run at more scenes for seed 0 only keeps that run alone, not a mean with seed 1
    at the old setting; a cell re-run for every seed, and cells not re-run, keep their seeds."""
    def run(task, variant, seed, value, items):
        return {**_run(task, variant, seed, value), "train_items": items, "steps": 100, "batch_size": 8}

    common = {"load_average_start": [1.0, 1.0, 1.0], "seconds": 1.0, "tasks": ["vqa", "refexp"]}
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({**common, "seeds": [0, 1], "runs": [
        run("vqa", "text_only", 0, 0.5, 2000), run("vqa", "text_only", 1, 0.4, 2000),
        run("vqa", "vilbert", 0, 0.7, 2000), run("vqa", "vilbert", 1, 0.7, 2000),
        run("refexp", "vilbert", 0, 0.9, 2000), run("refexp", "vilbert", 1, 0.8, 2000)]}))
    new.write_text(json.dumps({**common, "seeds": [0, 1], "runs": [
        run("vqa", "text_only", 0, 0.6, 8000), run("vqa", "vilbert", 0, 0.8, 8000),
        run("vqa", "vilbert", 1, 0.9, 8000)]}))
    s = merge([old, new], tmp_path / "all.json", same_setting=True)["summary"]
    assert s["vqa"]["text_only"]["seeds"] == [0.6]
    assert s["vqa"]["vilbert"] == {"seeds": [0.8, 0.9], "mean": pytest.approx(0.85)}
    assert s["refexp"]["vilbert"]["seeds"] == [0.9, 0.8]
    loose = merge([old, new], tmp_path / "loose.json")["summary"]  # the default averages across settings
    assert loose["vqa"]["text_only"]["seeds"] == [0.4, 0.6]
