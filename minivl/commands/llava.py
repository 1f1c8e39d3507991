"""``minivl llava train --stage 1|2`` / ``minivl llava study`` / ``minivl llava chat``: the
command line over ``minivl.recipes.llava`` (lecture S29-S37)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from minivl.commands._options import write_results


def _train(args):
    from minivl.recipes.llava import run_stage

    began = time.perf_counter()
    model, data, h = run_stage(args.stage, args.out, args.steps, args.batch_size, args.projector,
                               args.seed, args.n_train, args.lm_steps, args.clip, args.resume,
                               not args.quiet, args.conversations, args.lm_depth, args.image_position,
                               args.balance_kinds, args.lm_text, args.short_answers, args.short_share)
    trained = model.num_parameters(trainable_only=True)
    print(f"LLaVA stage {args.stage}: {trained:,} of {model.num_parameters():,} parameters trained; "
          f"{len(h.loss)} steps, loss {h.loss[0]:.3f} -> {np.mean(h.loss[-10:]):.3f}"
          if h.loss else f"LLaVA stage {args.stage}: nothing left to train")
    print(f"checkpoint: {Path(args.out) / f'stage{args.stage}.safetensors'} "
          f"({time.perf_counter() - began:.0f} s in all)")
    return 0


def _study(args):
    import os

    from minivl.recipes.llava import study

    runs = []
    if args.merge:
        import json

        studies = [json.loads(Path(path).read_text()) for path in args.merge]
        runs = join_seeds([run for written in studies for run in written["results"]["runs"]])
        # the options and commands of the runs themselves (this command's are only --merge and --out)
        extra = {"merged_from": args.merge, "clip_checkpoint": _clip_record(args.clip),
                 "study_commands": [s.get("command") for s in studies],
                 "study_options": [s.get("options") for s in studies]}
        for run in runs:  # the steps of the CLIP actually read, not the recipe's default
            run["steps"]["clip"] = extra["clip_checkpoint"].get("steps", run["steps"]["clip"])
        out = write_results(args.out, "llava study", vars(args), {"runs": runs, **summary(runs), **extra})
        print(f"results: {out}")
        return 0
    for seed in args.seeds:
        load = [round(x, 2) for x in os.getloadavg()]

        def partial(r, load=load):  # after every row: a partial study survives an interrupted run
            r["load_average_at_start"], r["load_average_now"] = load, [round(x, 2) for x in os.getloadavg()]
            if args.out:
                write_results(args.out, "llava study", vars(args), {"runs": runs + [r], **summary(runs + [r])})

        r = study(seed, n_train=args.n_train, lm_steps=args.lm_steps, stage1_steps=args.stage1_steps,
                  stage2_steps=args.stage2_steps, batch_size=args.batch_size, stage2_lr=args.stage2_lr,
                  clip_cache=args.clip, conversations=args.conversations, rows=tuple(args.rows),
                  lm_depth=args.lm_depth, image_position=args.image_position,
                  balance_kinds=args.balance_kinds, lm_text=args.lm_text,
                  short_answers=args.short_answers, short_share=args.short_share, curve_every=args.curve_every,
                  out=Path(args.checkpoints) / f"seed{seed}" if args.checkpoints else None,
                  progress=not args.quiet, wait_for_clip=args.wait_for_clip, on_row=partial)
        partial(r)
        runs.append(r)
        for name, row in r["rows"].items():
            print(f"seed {seed} {name:>10}: short answers {row['short_answer']:.1%}, description F1 "
                  f"{row['describe_f1']:.2f}, reasoning {row['reasoning']:.1%}, caption precision "
                  f"{row['caption_precision']:.2f}")
    if args.out:
        print(f"results: {args.out}")
    return 0


def join_seeds(runs) -> list[dict]:
    """One run per seed: the rows of a seed run in several processes (``--rows``) joined.

    The first part's other fields are kept; each part's rows, seconds and load
    averages are listed under ``parts``. A row measured twice is an error.
    """
    joined = {}
    for run in runs:
        part = {"rows": sorted(run["rows"]), "total_seconds": run.get("total_seconds"),
                "load_average_at_start": run.get("load_average_at_start"),
                "load_average_now": run.get("load_average_now")}
        if run["seed"] not in joined:
            joined[run["seed"]] = {**run, "rows": dict(run["rows"]), "seconds": dict(run["seconds"]),
                                   "parts": [part]}
            continue
        into = joined[run["seed"]]
        twice = set(into["rows"]) & set(run["rows"])
        if twice:
            raise SystemExit(f"seed {run['seed']}: rows {sorted(twice)} are in more than one file")
        into["rows"].update(run["rows"])
        into["seconds"].update(run["seconds"])
        into["parts"].append(part)
    return list(joined.values())


def _clip_record(folder) -> dict:
    """Which CLIP the study read: its file and the steps it was trained for."""
    from minivl.io import load
    from minivl.recipes.llava import clip_folder

    path = Path(folder or clip_folder()) / "clip.safetensors"
    if not path.exists():
        return {}
    return {"file": str(path), "steps": int(load(path)["step"])}


def summary(runs) -> dict:
    """Mean and per-seed values of the headline metrics of each row."""
    keys = ("short_answer", "short_exist", "short_count", "short_colour", "short_shape",
            "short_relation", "describe_f1", "describe_precision", "describe_recall",
            "describe_f1_located", "reasoning", "caption_precision", "caption_objects_named")
    rows = [r for r in runs[0]["rows"] if all(r in run["rows"] for run in runs)]
    have = lambda r, k: all(k in run["rows"][r] for run in runs)  # older runs lack the caption metrics
    return {"mean": {r: {k: float(np.mean([run["rows"][r][k] for run in runs])) for k in keys if have(r, k)}
                     for r in rows},
            "seeds": [run["seed"] for run in runs]}


def _eval(args):
    """Score one checkpoint written by 'minivl llava train' on held-out scenes."""
    import os

    from minivl.checkpoint import load_checkpoint
    from minivl.io import load
    from minivl.models.llava import LLaVA
    from minivl.recipes.llava import LLaVAData, evaluate

    load_avg = [round(x, 2) for x in os.getloadavg()]
    model = load_checkpoint(LLaVA, args.checkpoint)
    data = LLaVAData(args.n_train, 200, args.seed, conversations=args.conversations)
    if data.tokenizer.vocab_size != model.config.vocab_size:
        raise SystemExit(f"{args.checkpoint} does not match the tokenizer of --seed {args.seed} "
                         f"--n-train {args.n_train} --conversations {args.conversations}")
    data.compute_features(model)
    m = evaluate(model, data, n_per_type=args.n_per_type, n_describe=args.n_describe,
                 n_reason=args.n_reason, seed=args.seed)
    m["trained_steps"] = int(load(args.checkpoint)["step"]) if "step" in load(args.checkpoint) else None
    m["load_average_at_start"] = load_avg
    print({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
    if args.out:
        print(f"results: {write_results(args.out, 'llava eval', vars(args), m)}")
    return 0


def _probe(args):
    """What the frozen eye's patch tokens carry, and what a blind guess scores (a diagnosis)."""
    import os

    from minivl.models.gpt import GPT
    from minivl.recipes.llava import LLaVAData, build, clip_tower
    from minivl.recipes.llava_probe import answer_balance, probe_eye

    load = [round(x, 2) for x in os.getloadavg()]
    clip = clip_tower(args.clip, progress=False)
    runs = {}
    for seed in args.seeds:
        data = LLaVAData(args.n_train, 200, seed)  # the study's scenes (its held-out ones too)
        gpt = GPT(vocab_size=data.tokenizer.vocab_size, max_len=128, dim=16, depth=1, num_heads=2)
        data.compute_features(build(data, clip, gpt))  # the eye only: the GPT is never used
        runs[seed] = {"probes": probe_eye(data.train_features, data.train_scenes, data.test_features,
                                          data.test_scenes),
                      "answer_balance": answer_balance(data.test_scenes, args.n_per_type, seed)}
        print(f"seed {seed}:", {k: round(v, 3) for k, v in runs[seed]["probes"].items()})
        print("  majority answer share:", {t: round(v["majority_share"], 2)
                                           for t, v in runs[seed]["answer_balance"].items()})
    results = {"runs": runs, "clip_checkpoint": _clip_record(args.clip), "load_average_at_start": load,
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    print(f"results: {write_results(args.out, 'llava probe', vars(args), results)}")
    return 0


def _diagnose(args):
    """Why exist, count and relation stay at the blind prior: a trained study's checkpoints, measured."""
    import os

    from minivl.checkpoint import load_checkpoint
    from minivl.models.llava import LLaVA
    from minivl.recipes.llava import LLaVAData
    from minivl.recipes.llava_diagnose import answer_balance_by_form, diagnose, single_type_fit

    load_avg, began = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    folder = Path(args.checkpoints)
    stage1 = load_checkpoint(LLaVA, folder / "stage1.safetensors")
    stage2 = stage1 if args.fits_only else load_checkpoint(LLaVA, folder / "stage2.safetensors")
    data = LLaVAData(args.n_train, 200, args.seed, conversations=args.conversations, balance_kinds=True,
                     lm_text=args.lm_text)  # the study's scenes, tokenizer and held-out scenes
    if data.tokenizer.vocab_size != stage2.config.vocab_size:
        raise SystemExit(f"{folder} does not match the tokenizer of --seed {args.seed} --n-train "
                         f"{args.n_train} --conversations {args.conversations} --lm-text {args.lm_text}")
    data.compute_features(stage2)
    results = {"checkpoints": str(folder),
               "stage2": {} if args.fits_only else diagnose(stage2, data, args.n_per_type, args.seed),
               "answer_balance_by_form": answer_balance_by_form(data.test_scenes, seed=args.seed),
               "single_type_fit": {}}
    for qtype in args.fit_types:
        for oracle in (False, True) if qtype in args.oracle_types else (False,):
            name = qtype + ("_oracle" if oracle else "")
            results["single_type_fit"][name] = single_type_fit(stage1, data, qtype, args.fit_steps, oracle,
                                                               args.seed, args.n_per_type, not args.quiet)
            held, trained = results["single_type_fit"][name]["held_out"], results["single_type_fit"][name]["training"]
            print(f"{name} alone: held-out {held['accuracy']:.2f} (forced {held['forced_choice']:.2f}), "
                  f"training {trained['accuracy']:.2f}")
    for where, rows in results["stage2"].items():
        print(f"{where:>15}:", {t: round(v["accuracy"], 2) if isinstance(v, dict) else round(v, 2)
                                for t, v in rows.items()})
    results.update(seconds=time.perf_counter() - began, load_average_at_start=load_avg,
                   load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    print(f"results: {write_results(args.out, 'llava diagnose', vars(args), results)}")
    return 0


def _chat(args):
    from minivl.recipes.llava_chat import chat_session

    try:
        session = chat_session(args.checkpoint, args.image, args.scene_seed, args.show)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    session.run(sys.stdin, sys.stdout)
    return 0


CONV_HELP = "conversation samples per training scene (the weight of short answers in the mix)"
BALANCE_HELP = "stage 2 draws each kind (conversation, detail, reasoning) equally often"
POSITION_HELP = ("the <image> placeholder before the first instruction ('<image>\\nquestion') or "
                 "after it ('question\\n<image>')")
LM_TEXT_HELP = ("the GPT's pretraining text: 'plain' (instruction response), 'chat' (the same in the "
                "USER:/ASSISTANT: template, as Vicuna read chats) or 'reader' (in the template, each training "
                "scene stated in words where its image goes, so the GPT must read its prompt)")
SHORT_HELP = "one-round short questions per training scene for stage 2 (0: none)"
SHARE_HELP = "the share of stage-2 batches drawn from the short questions alone"
CLIP_HELP = ("folder of a CLIP run ('minivl clip train --out'); default: the eye cached under "
             "$MINIVL_CACHE (~/.cache/minivl), trained once when absent")


def register(subparsers):
    from minivl.recipes.llava import LM_TEXTS, LR, STUDY, STUDY_ROWS

    p = subparsers.add_parser("llava", help="LLaVA: a frozen CLIP eye, a projector, a GPT; "
                                            "two-stage visual instruction tuning, chat (S29-S37)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="stage 1 (projector only) or stage 2 (projector + LM)")
    t.add_argument("--stage", type=int, choices=(1, 2), required=True)
    t.add_argument("--steps", type=int, default=None,
                   help=f"default: {STUDY['stage1_steps']} (stage 1), {STUDY['stage2_steps']} (stage 2)")
    t.add_argument("--batch-size", type=int, default=STUDY["batch_size"])
    t.add_argument("--projector", choices=("linear", "mlp"), default="linear",
                   help="linear: LLaVA v1; mlp: Linear-GELU-Linear, LLaVA-1.5 (stage 1 decides)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-train", type=int, default=STUDY["n_train"], help="training scenes")
    t.add_argument("--lm-steps", type=int, default=STUDY["lm_steps"],
                   help="GPT pretraining steps (stage 1, cached)")
    t.add_argument("--conversations", type=int, default=STUDY["conversations"], help=CONV_HELP)
    t.add_argument("--lm-depth", type=int, default=STUDY["lm_depth"], help="the GPT's blocks (stage 1)")
    t.add_argument("--balance-kinds", action=argparse.BooleanOptionalAction, default=STUDY["balance_kinds"],
                   help=BALANCE_HELP)
    t.add_argument("--image-position", choices=("before", "after"), default=STUDY["image_position"],
                   help=POSITION_HELP + " (stage 1; stage 2 keeps the checkpoint's)")
    t.add_argument("--lm-text", choices=LM_TEXTS, default=STUDY["lm_text"], help=LM_TEXT_HELP + " (stage 1)")
    t.add_argument("--short-answers", type=int, default=STUDY["short_answers"], help=SHORT_HELP)
    t.add_argument("--short-share", type=float, default=STUDY["short_share"], help=SHARE_HELP)
    t.add_argument("--clip", default=None, help=CLIP_HELP)
    t.add_argument("--out", default="runs/llava", help="folder for gpt/stage1/stage2.safetensors")
    t.add_argument("--resume", default=None, help="a stageN.safetensors to continue to --steps")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)
    s = sub.add_parser("study", help="the S36 table: LM alone, stage 1, stage 2, stage 2 v1.5, per seed")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    s.add_argument("--n-train", type=int, default=STUDY["n_train"])
    s.add_argument("--lm-steps", type=int, default=STUDY["lm_steps"])
    s.add_argument("--stage1-steps", type=int, default=STUDY["stage1_steps"])
    s.add_argument("--stage2-steps", type=int, default=STUDY["stage2_steps"])
    s.add_argument("--stage2-lr", type=float, default=None, help=f"default: {LR[2]}")
    s.add_argument("--conversations", type=int, default=STUDY["conversations"], help=CONV_HELP)
    s.add_argument("--lm-depth", type=int, default=STUDY["lm_depth"], help="the GPT's blocks")
    s.add_argument("--balance-kinds", action=argparse.BooleanOptionalAction, default=STUDY["balance_kinds"],
                   help=BALANCE_HELP)
    s.add_argument("--image-position", choices=("before", "after"), default=STUDY["image_position"],
                   help=POSITION_HELP)
    s.add_argument("--rows", nargs="+", choices=STUDY_ROWS, default=list(STUDY_ROWS),
                   help="which rows to run (the rest can run in another process; --merge joins them)")
    s.add_argument("--batch-size", type=int, default=STUDY["batch_size"])
    s.add_argument("--lm-text", choices=LM_TEXTS, default=STUDY["lm_text"], help=LM_TEXT_HELP)
    s.add_argument("--short-answers", type=int, default=STUDY["short_answers"], help=SHORT_HELP)
    s.add_argument("--short-share", type=float, default=STUDY["short_share"], help=SHARE_HELP)
    s.add_argument("--curve-every", type=int, default=0,
                   help="also measure short answers by type every this many stage-2 steps (0: never)")
    s.add_argument("--checkpoints", default=None,
                   help="folder: keep each seed's linear-projector stage1/stage2.safetensors in seedN/ "
                        "(for 'minivl llava diagnose')")
    s.add_argument("--clip", default=None, help=CLIP_HELP)
    s.add_argument("--out", default="results/llava_study.json")
    s.add_argument("--wait-for-clip", type=int, default=0,
                   help="seconds to wait for another process writing the CLIP cache")
    s.add_argument("--merge", nargs="+", default=None,
                   help="instead of training: join the runs of these study files into --out")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_study)
    e = sub.add_parser("eval", help="score one checkpoint on held-out scenes (S36)")
    e.add_argument("--checkpoint", default="runs/llava/stage2.safetensors")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--n-train", type=int, default=STUDY["n_train"], help="as in training (rebuilds the tokenizer)")
    e.add_argument("--conversations", type=int, default=STUDY["conversations"], help="as in training")
    e.add_argument("--n-per-type", type=int, default=30)
    e.add_argument("--n-describe", type=int, default=30)
    e.add_argument("--n-reason", type=int, default=30)
    e.add_argument("--out", default=None)
    e.set_defaults(func=_eval)
    pr = sub.add_parser("probe", help="linear probes on the frozen eye's patch tokens; answer balance")
    pr.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    pr.add_argument("--n-train", type=int, default=STUDY["n_train"])
    pr.add_argument("--n-per-type", type=int, default=60, help="as the study's evaluation")
    pr.add_argument("--clip", default=None, help=CLIP_HELP)
    pr.add_argument("--out", default="results/llava_probe.json")
    pr.set_defaults(func=_probe)
    d = sub.add_parser("diagnose", help="why some answer types stay at the blind prior (a study's checkpoints)")
    d.add_argument("--checkpoints", default="runs/llava_study/seed0",
                   help="a folder with stage1/stage2.safetensors ('minivl llava study --checkpoints')")
    d.add_argument("--seed", type=int, default=0, help="the study seed that wrote them")
    d.add_argument("--n-train", type=int, default=STUDY["n_train"], help="as in the study")
    d.add_argument("--conversations", type=int, default=STUDY["conversations"], help="as in the study")
    d.add_argument("--lm-text", choices=LM_TEXTS, default=STUDY["lm_text"], help="as in the study")
    d.add_argument("--n-per-type", type=int, default=60)
    d.add_argument("--fit-types", nargs="*", default=["exist", "count", "colour"],
                   help="question types to train stage 2 on alone, from the stage-1 checkpoint")
    d.add_argument("--oracle-types", nargs="*", default=["exist"],
                   help="of those, the types also fitted on the true cell attributes (one-hot)")
    d.add_argument("--fit-steps", type=int, default=1500)
    d.add_argument("--fits-only", action="store_true",
                   help="only the single-type fits, from stage1.safetensors (no stage-2 checkpoint needed)")
    d.add_argument("--out", default="results/llava_diagnose.json")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_diagnose)
    c = sub.add_parser("chat", help="talk about one picture: streaming, /reset, /quit")
    c.add_argument("--checkpoint", default="runs/llava/stage2.safetensors")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="a 48 x 48 RGB PNG")
    src.add_argument("--scene-seed", type=int, help="render a random shapes-world scene")
    c.add_argument("--show", default=None, help="with --scene-seed: write the scene to this PNG")
    c.set_defaults(func=_chat)
