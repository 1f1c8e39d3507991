"""LLaVA's two stages (S34, S35): what is frozen stays bit for bit and gets no gradient;
a resumed run equals an uninterrupted one; the chat command holds a scripted conversation."""

from __future__ import annotations

import io

import numpy as np
import pytest

from minivl.checkpoint import save_checkpoint
from minivl.recipes.llava import LLaVAData, build, freeze_for_stage, train_stage


def snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("stage", [1, 2])
def test_frozen_parts_unchanged_and_without_gradient(parts, stage):
    data, clip, gpt = parts
    model = build(data, clip, gpt)
    before = {name: snapshot(getattr(model, name)) for name in ("vision", "projector", "lm")}
    seen = {}

    import minivl.optim as optim

    step = optim.AdamW.step

    def spy(self):  # record which parameters carry a gradient when the optimizer steps
        for name in ("vision", "projector", "lm"):
            seen.setdefault(name, []).extend(p.grad is not None for p in getattr(model, name).parameters())
        return step(self)

    optim.AdamW.step = spy
    try:
        train_stage(model, data, stage, steps=2, batch_size=4, progress=False)
    finally:
        optim.AdamW.step = step
    trains = {"vision": False, "projector": True, "lm": stage == 2}
    for name, trained in trains.items():
        after = snapshot(getattr(model, name))
        same = all(np.array_equal(before[name][k], after[k]) for k in after)
        assert same != trained, f"stage {stage}: {name} should {'' if trained else 'not '}change"
        assert all(seen[name]) if trained else not any(seen[name]), f"stage {stage}: {name} gradients"


def test_bad_stage_raises(parts):
    data, clip, gpt = parts
    with pytest.raises(ValueError, match="stage"):
        freeze_for_stage(build(data, clip, gpt), 3)


def test_resume_equals_uninterrupted(parts, tmp_path):
    from minivl.random import manual_seed

    data, clip, gpt = parts
    manual_seed(1)
    a = build(data, clip, gpt)
    train_stage(a, data, 2, steps=4, batch_size=4, progress=False, out=tmp_path / "a")
    manual_seed(1)
    b = build(data, clip, gpt)
    train_stage(b, data, 2, steps=4, batch_size=4, progress=False, out=tmp_path / "b", stop_after=2)
    c = build(data, clip, gpt)
    train_stage(c, data, 2, steps=4, batch_size=4, progress=False, out=tmp_path / "c",
                resume=tmp_path / "b" / "stage2.safetensors")
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, c.state_dict()[k], err_msg=k)


def test_balanced_kinds_draw_each_kind_equally(parts):
    """Three conversations per description and per reasoning sample: drawn uniformly,
    conversations fill three fifths of the batches; with ``balance_kinds`` a third."""
    from dataclasses import replace

    from minivl.recipes.llava import batches, kind_weights

    data, _, _ = parts
    examples = data.examples(2, 9)
    by_kind = {k: [e for e in examples if e.kind == k] for k in ("conversation", "detail", "reasoning")}
    mix = by_kind["conversation"][:30] + by_kind["detail"][:10] + by_kind["reasoning"][:10]
    mix = [replace(e, scene_index=i) for i, e in enumerate(mix)]  # the feature says which sample
    w = kind_weights(mix)
    assert abs(w.sum() - 1) < 1e-12 and abs(w[:30].sum() - 1 / 3) < 1e-12
    feats = np.arange(len(mix))[:, None, None] * np.ones((1, 9, 1))
    for balance, want in ((False, 30 / 50), (True, 1 / 3)):
        stream = batches(mix, feats, 0, 4, seed=0, balance_kinds=balance)
        drawn = np.concatenate([next(stream)[0][:, 0, 0] for _ in range(800)]).astype(int)
        conv = np.mean(drawn < 30)
        assert abs(conv - want) < 0.03, (balance, conv)


@pytest.mark.parametrize("image_position", ["before", "after"])
def test_chat_scripted_conversation(parts, tmp_path, monkeypatch, capsys, image_position):
    from minivl.cli import main
    from minivl.recipes.llava_chat import chat_session

    data, clip, gpt = parts
    model = build(data, clip, gpt, image_position=image_position)
    save_checkpoint(model, tmp_path / "stage2.safetensors")
    data.tokenizer.save(tmp_path / "tokenizer.json")
    script = "What colour is the circle?\nIs there a square?\n/reset\nHow many shapes are there?\n/quit\nnever read\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    assert main(["llava", "chat", "--checkpoint", str(tmp_path / "stage2.safetensors"),
                 "--scene-seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("USER: ") == 3 and "(conversation reset)" in out and "never read" not in out
    # the second turn, streamed on the caches of the first, equals a fresh decode of the whole history
    s = chat_session(tmp_path / "stage2.safetensors", scene_seed=3)
    s.max_answer = 5
    "".join(s.ask("What colour is the circle?"))
    start = len(s.ids)
    before_image = data.tokenizer.decode(s.ids[:s.ids.index(data.tokenizer.special_tokens["<image>"])])
    assert ("What colour is the circle?" in before_image) == (image_position == "after")
    second = "".join(s.ask("Is there a square?"))
    stop = data.tokenizer.special_tokens["</s>"]
    history = np.array(s.ids)
    new = len(s.ids) - start - 6  # this turn's prompt tokens (5 answer tokens + </s> follow)
    prefix = history[: start + new]
    fresh = model.generate(prefix[None], s.features, 5, stop_id=stop)[0].tolist()
    assert fresh == history[start + new: start + new + 5].tolist()
    assert second == "".join(data.tokenizer.decode([t]) for t in fresh)


def test_chat_clear_errors(parts, tmp_path, capsys):
    from minivl.cli import main

    data, clip, gpt = parts
    model = build(data, clip, gpt)
    save_checkpoint(model, tmp_path / "stage2.safetensors")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    data.tokenizer.save(tmp_path / "tokenizer.json")
    ck = str(tmp_path / "stage2.safetensors")
    assert main(["llava", "chat", "--checkpoint", ck, "--image", str(tmp_path / "bad.png")]) == 2
    assert "not a readable PNG" in capsys.readouterr().err
    import matplotlib.pyplot as plt

    plt.imsave(tmp_path / "small.png", np.zeros((32, 32, 3)))
    assert main(["llava", "chat", "--checkpoint", ck, "--image", str(tmp_path / "small.png")]) == 2
    assert "48 x 48" in capsys.readouterr().err
    other = LLaVAData(n_train=10, n_test=2, seed=5, vocab_size=350).tokenizer
    other.save(tmp_path / "tokenizer.json")
    assert main(["llava", "chat", "--checkpoint", ck, "--scene-seed", "0"]) == 2
    assert "do not belong together" in capsys.readouterr().err
    save_checkpoint(gpt, tmp_path / "gpt.safetensors")
    assert main(["llava", "chat", "--checkpoint", str(tmp_path / "gpt.safetensors"), "--scene-seed", "0"]) == 2
    assert "not LLaVA" in capsys.readouterr().err


def test_default_eye_is_read_from_the_cache_not_retrained(parts, tmp_path, monkeypatch):
    """The trained default eye lives under $MINIVL_CACHE (minivl.checkpoint.cache_dir) and is read back."""
    import minivl.recipes.clip as clip_recipe
    from minivl.recipes.llava import clip_folder, clip_tower
    from minivl.tokenizers.clip import CLIPTokenizer

    _, clip, _ = parts
    monkeypatch.setenv("MINIVL_CACHE", str(tmp_path / "cache"))
    folder = clip_folder(7)
    assert folder.parent == tmp_path / "cache" and "7" in folder.name
    save_checkpoint(clip, folder / "clip.safetensors")
    CLIPTokenizer.train(["a red circle", "a blue square"], 300, 8).save(folder / "clip.tokenizer.json")
    monkeypatch.setattr(clip_recipe, "train_clip", lambda *a, **k: pytest.fail("the cached eye was retrained"))
    eye = clip_tower(steps=7, progress=False)
    want = clip.state_dict()
    assert all(np.array_equal(a, want[k]) for k, a in eye.state_dict().items())
    # a folder given explicitly (--clip PATH) is read from there
    other = tmp_path / "elsewhere"
    save_checkpoint(clip, other / "clip.safetensors")
    CLIPTokenizer.train(["a red circle"], 300, 8).save(other / "clip.tokenizer.json")
    assert np.array_equal(clip_tower(other, progress=False).logit_scale.numpy(), clip.logit_scale.numpy())


def test_study_rows_run_apart_are_joined_per_seed():
    from minivl.commands.llava import join_seeds, summary
    from minivl.recipes.llava import study

    row = lambda v: {k: v for k in ("short_answer", "short_exist", "short_count", "short_colour", "short_shape",
                                    "short_relation", "describe_f1", "describe_precision", "describe_recall",
                                    "describe_f1_located", "reasoning")}
    run = lambda seed, rows: {"seed": seed, "rows": {r: row(v) for r, v in rows.items()},
                              "seconds": {r: 1.0 for r in rows}, "total_seconds": 2.0}
    runs = [run(0, {"lm_alone": 0.1, "stage2": 0.5}), run(1, {"lm_alone": 0.3, "stage2": 0.7}),
            run(1, {"stage2_v15": 0.9}), run(0, {"stage2_v15": 0.6})]
    joined = join_seeds(runs)
    assert [r["seed"] for r in joined] == [0, 1]
    assert all(sorted(r["rows"]) == ["lm_alone", "stage2", "stage2_v15"] and len(r["parts"]) == 2 for r in joined)
    mean = summary(joined)["mean"]
    assert mean["stage2_v15"]["short_answer"] == pytest.approx(0.75)
    assert mean["stage2"]["short_answer"] == pytest.approx(0.6)
    with pytest.raises(SystemExit, match="more than one file"):
        join_seeds(runs + [run(0, {"stage2": 0.2})])
    with pytest.raises(ValueError, match="rows"):
        study(rows=("stage3",))


def test_short_batches_take_their_share_and_leave_the_old_stream_alone(parts):
    """``short_share`` of the batches come from the short questions alone, the others from the
    teacher's mix alone; with no share the batches are those drawn before the option existed."""
    from dataclasses import replace

    from minivl.data.llava_data import format_items, short_questions
    from minivl.recipes.llava import batches

    data, _, _ = parts
    mix = data.examples(2, 9)[:50]
    short = format_items(data.tokenizer, short_questions(data.train_scenes, 0, 2), 9)
    mix = [replace(e, scene_index=i) for i, e in enumerate(mix)]  # the feature says which sample
    short = [replace(e, scene_index=len(mix) + i) for i, e in enumerate(short)]
    feats = np.arange(len(mix) + len(short))[:, None, None] * np.ones((1, 9, 1))
    stream = batches(mix, feats, 0, 4, seed=0, short=short, short_share=0.3)
    drawn = [next(stream)[0][:, 0, 0] >= len(mix) for _ in range(800)]
    assert all(d.all() or not d.any() for d in drawn)  # a batch is of one pool
    assert abs(np.mean([d.all() for d in drawn]) - 0.3) < 0.04
    # short_share 0: batch s is still default_rng([seed, s]).choice(...) of the mix
    old = batches(mix, feats, 0, 4, seed=7, short=short, short_share=0.0)
    for s in range(1, 4):
        pick = np.random.default_rng([7, s]).choice(len(mix), 4, replace=False)
        np.testing.assert_array_equal(next(old)[0][:, 0, 0], pick)
    with pytest.raises(ValueError, match="short_share"):
        next(batches(mix, feats, 0, 4, seed=0, short=(), short_share=0.5))
    with pytest.raises(ValueError, match="short_share"):
        LLaVAData(n_train=5, n_test=2, short_answers=0, short_share=0.5)
