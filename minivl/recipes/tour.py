"""The tour: train every model of the lecture, in lecture order, at tiny scale
on CPU, and write a report folder (``report.md`` + PNG plots); ``minivl tour``
runs it.

The stages reuse each model's own recipe (``train_bert``, ``train_gpt``,
``train_vit``, ``train_clip``), so the tour is a table of contents, not a
second implementation. ``--quick`` shortens every run, keeping each long enough
to show something learned (400 s for all eight stages on two cores at one thread
each, ``results/tour_quick.json``); without it the runs are the recipes' own,
long enough to reach the figures quoted in each model's notes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minivl.report import Report  # noqa: E402
from minivl.threads import current_threads  # noqa: E402

# steps per stage: (quick, full)
STEPS = {
    "bert": (200, 600),
    "gpt": (200, 300),
    "vit_digits": (300, 400),
    "vit_shapes": (150, 200),
    "clip_shapes": (1500, 3000),
    "clip_digits": (150, 300),
    # ViLBERT quick: at 30 steps each (an earlier results/tour_quick.json) VQA and refexp stayed below chance;
    # at 300 they reach 0.56 and 0.70 against chance 0.39 and 0.61
    # (results/tour_quick_vilbert_300steps.json), about 0.08 s a step at one thread
    # With the tour's BERT as the text stream, 300 pretraining steps left held-out alignment at
    # chance and referring expressions barely above it; 600 of each show both learning
    "vilbert_pretrain": (600, 1500),
    "vilbert_vqa": (300, 400),
    "vilbert_refexp": (600, 300),
    # LLaVA quick: at 60 stage-2 steps (results/tour_quick_20261204.json, 226 s in all) no short answer was right;
    # 1,500 steps at batch 16 teach colour and shape (about 90 s at one thread); the full tour
    # takes the study's steps (lectures/10-llava.md, S36)
    "llava_lm": (200, 500),
    "llava_stage1": (50, 200),
    "llava_stage2": (1500, 3500),
    # DALL-E quick: 60 + 60 steps of a 64-code dVAE left a collapsed codebook (perplexity 2.3) and
    # blank samples; an 8 x 8 grid of 128 codes for 300 steps and a 3-layer prior for 600 draw
    # blobs of the caption's colours in about two minutes; the full tour takes the recipe defaults
    "dalle_dvae": (300, 1200),
    "dalle_prior": (600, 3000),
}
# training scenes (LLaVA) and caption-image pairs (DALL-E) per stage: (quick, full)
DATA = {"llava": (1000, 2000), "dalle": (4000, 20000)}
# ViLBERT's scenes per i.i.d. part (train, val, test) for the transfer tasks: (quick, full). (The
# 1,272 s an earlier quick stage took at load 17-26 was mostly BLAS and Numba threads fighting
# for the cores: minivl/threads.py.)
VILBERT_SIZES = ((200, 60, 120), (2000, 300, 1000))


def _curve(history, title, ylabel="training loss", evals_key=None, evals_label=None):
    """Loss per step (and, on a second axis, an evaluation metric)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(history.steps, history.loss, lw=1, color="tab:blue")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    if evals_key and history.evals:
        ax2 = ax.twinx()
        steps = [e["step"] for e in history.evals if evals_key in e]
        values = [e[evals_key] for e in history.evals if evals_key in e]
        ax2.plot(steps, values, "o-", color="tab:orange", ms=3)
        ax2.set_ylabel(evals_label or evals_key, color="tab:orange")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- stages


def stage_tokenizer(report, quick, progress):
    from minivl.data.corpus import build_corpus

    t0 = time.perf_counter()
    corpus = build_corpus(seed=0)
    tok = corpus.tokenizer
    text = " ".join(a + " " + b for a, b in corpus.val[:50])
    ids = tok.encode(text)
    merges = sorted(tok.mergeable_ranks().items(), key=lambda kv: kv[1])[256:266]
    report.section("Byte-level BPE tokenizer (S01, S26)",
                   "A GPT-2-style byte-level BPE trained on the shapes-world caption corpus; "
                   "every later text model reads its ids.")
    report.table({
        "vocabulary (bytes + merges + specials)": tok.vocab_size,
        "bytes per token on held-out captions": round(len(text.encode()) / max(len(ids), 1), 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }, name="tokenizer")
    report.text("First merges: " + ", ".join(f"`{b.decode('utf-8', 'replace')}`" for b, _ in merges))
    report.text("Token boundaries: `" + tok.visualise(corpus.val[0][0]) + "`")
    return corpus


def stage_bert(report, quick, progress, corpus):
    from minivl.recipes.bert import train_bert

    r = train_bert(corpus=corpus, steps=STEPS["bert"][0 if quick else 1], progress=progress)
    m = r["metrics"]
    report.section("BERT: masked language modelling (S01)",
                   "Post-LN encoder on the shared transformer block; 15% of tokens chosen, 80/10/10.")
    report.table({"MLM accuracy at step 0": m["mlm_accuracy_start"], "MLM accuracy": m["mlm_accuracy"],
                  "steps": m["steps"], "parameters": m["parameters"],
                  "train seconds": round(m["train_seconds"], 1)}, name="bert")
    report.figure(_curve(r["history"], "BERT", evals_key="mlm_accuracy", evals_label="val MLM accuracy"),
                  "bert_curve.png", "BERT training loss and validation MLM accuracy")
    return r


def stage_gpt(report, quick, progress, corpus):
    from minivl.recipes.gpt import train_gpt

    r = train_gpt(corpus=corpus, steps=STEPS["gpt"][0 if quick else 1], progress=progress)
    m = r["metrics"]
    report.section("GPT: next-token prediction (S01)",
                   "Pre-LN causal decoder on the same block, tied output head, key/value-cached sampling.")
    report.table({"val perplexity at step 0": m["val_perplexity_start"], "val perplexity": m["val_perplexity"],
                  "steps": m["steps"], "parameters": m["parameters"],
                  "train seconds": round(m["train_seconds"], 1)}, name="gpt")
    report.text("Samples at step 0:\n\n" + "\n".join(f"    {s!r}" for s in r["samples_start"]))
    report.text("Samples after training:\n\n" + "\n".join(f"    {s!r}" for s in r["samples_end"]))
    report.figure(_curve(r["history"], "GPT", evals_key="val_perplexity", evals_label="val perplexity"),
                  "gpt_curve.png", "GPT training loss and validation perplexity")
    return m


def stage_vit(report, quick, progress):
    from minivl.recipes.vit import train_vit
    from minivl.viz.attention import attention_rollout_figure

    report.section("ViT: images as sequences of patches (S01, S14, S29)",
                   "Patch embedding, [CLS], learned positions and pre-LN blocks: the vision encoder "
                   "that CLIP and LLaVA reuse.")
    out = {}
    for task in ("digits", "shapes"):
        r = train_vit(task, steps=STEPS[f"vit_{task}"][0 if quick else 1], progress=progress)
        m = r["metrics"]
        out[task] = m
        report.text(f"**{task}**")
        report.table({"test accuracy at step 0": m["test_accuracy_start"], "test accuracy": m["test_accuracy"],
                      "steps": m["steps"], "train seconds": round(m["train_seconds"], 1)}, name=f"vit_{task}")
        report.figure(_curve(r["history"], f"ViT on {task}", evals_key="test_accuracy",
                             evals_label="test accuracy"), f"vit_{task}_curve.png")
        images = r["task"].test_images[:6]
        report.figure(attention_rollout_figure(r["model"], images), f"vit_{task}_rollout.png",
                      f"Attention rollout of the ViT trained on {task}")
    return out


def stage_clip(report, quick, progress):
    from minivl.metrics import embed_images, embed_texts
    from minivl.recipes.clip import train_clip
    from minivl.viz.clip import similarity_heatmap, training_curves

    report.section("CLIP: contrastive image-text pretraining (S12-S16)",
                   "A ViT image tower and a causal text tower trained with the symmetric InfoNCE loss "
                   "and a learned temperature; zero-shot on colour-shape pairs never seen together in "
                   "training, with prompt templates no training caption used, and retrieval among "
                   "scenes absent from training. On the digits every class is trained on, so that "
                   "score is classification with text labels, not zero-shot.")
    out, models = {}, {}
    for task in ("shapes", "digits"):
        r = train_clip(task=task, steps=STEPS[f"clip_{task}"][0 if quick else 1], progress=progress,
                       eval_every=10**9)
        m = r["metrics"]
        out[task], models[task] = m, r["model"]
        keep = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        report.text(f"**{task}**")
        report.table({k: (round(v, 4) if isinstance(v, float) else v) for k, v in keep.items()}, name=f"clip_{task}")
        h = r["history"]
        report.figure(training_curves(h.steps, h.loss, r["scale"]), f"clip_{task}_curves.png",
                      "Training loss and the learned temperature exp(logit_scale)")
        if task == "shapes":
            images, texts = r["evals"]["retrieval"]
            images, texts = images[:8], list(texts[:8])
            ids, mask = r["tokenizer"](texts)
            sim = embed_images(r["model"], images) @ embed_texts(r["model"], ids, mask).T
            report.figure(similarity_heatmap(sim, images, texts), "clip_similarity.png",
                          "Cosine similarities of 8 held-out images and their captions (S15)")
    return {"metrics": out, "shapes_model": models["shapes"]}


def stage_llava(report, quick, progress, clip=None):
    """LLaVA at tour scale: the tour's CLIP eye (or the cached one), a GPT, two stages; then the
    same questions with every held-out scene's picture swapped for another's, to show that the
    answers come from the image."""
    import numpy as np

    from minivl.recipes.llava import STUDY, LLaVAData, build, clip_tower, evaluate, pretrain_lm, train_stage

    pick = 0 if quick else 1
    data = LLaVAData(n_train=DATA["llava"][pick], n_test=60, seed=0, conversations=STUDY["conversations"],
                     balance_kinds=STUDY["balance_kinds"])
    gpt, lm = pretrain_lm(data.tokenizer, data.docs, STEPS["llava_lm"][pick], progress=progress)
    clip = clip if clip is not None else clip_tower(progress=progress)
    model = build(data, clip, gpt, image_position=STUDY["image_position"])
    data.compute_features(model)
    h1 = train_stage(model, data, 1, STEPS["llava_stage1"][pick], batch_size=STUDY["batch_size"], progress=progress)
    h2 = train_stage(model, data, 2, STEPS["llava_stage2"][pick], batch_size=STUDY["batch_size"], progress=progress)
    sizes = dict(n_per_type=12 if quick else 30, n_describe=20 if quick else 40, n_reason=20 if quick else 40)
    m = evaluate(model, data, **sizes)
    real = data.test_features
    data.test_features = np.roll(real, 1, axis=0)  # scene i now shows scene i - 1's picture
    swapped = evaluate(model, data, **sizes)
    data.test_features = real
    report.section("LLaVA: visual instruction tuning (S29-S37)",
                   "The CLIP image tower above, frozen (penultimate layer, patch tokens), a linear "
                   "projector into a GPT pretrained on the project's text; stage 1 trains the "
                   "projector on captions, stage 2 the projector and the GPT on the rule-based "
                   "teacher's conversations, descriptions and reasoning. Held-out scenes, asked "
                   "with their own picture and with another scene's: what the model gets right "
                   "only with its own picture, it read from the image. The full study with its "
                   "text-only baseline is `minivl llava study` (`results/llava_study.json`).")
    row = lambda r: {t: round(r[f"short_{t}"], 2) for t in ("exist", "count", "colour", "shape", "relation")}
    out = {"LM pretraining val perplexity": round(lm["val_perplexity"], 2),
           "stage 1 final loss": round(float(sum(h1.loss[-5:]) / len(h1.loss[-5:])), 3),
           "stage 2 final loss": round(float(sum(h2.loss[-5:]) / len(h2.loss[-5:])), 3),
           "short-answer accuracy": round(m["short_answer"], 3),
           "short-answer accuracy, another scene's picture": round(swapped["short_answer"], 3),
           "description F1": round(m["describe_f1"], 3),
           "description F1, another scene's picture": round(swapped["describe_f1"], 3),
           "reasoning accuracy": round(m["reasoning"], 3), "stage 2 steps": STEPS["llava_stage2"][pick]}
    report.table(out, name="llava")
    report.text("Short answers by question type (own picture / another scene's):")
    report.table({t: f"{row(m)[t]} / {row(swapped)[t]}" for t in row(m)}, name="llava_by_type")
    report.text("Example: " + m["example"]["instruction"] + " -> `" + m["example"]["reply"] + "`")
    return {**m, "swapped": swapped}


def stage_summary(report):
    from minivl.recipes.summary import markdown_table

    report.section("The summary table (S38)", "Every model of the lecture, with the figures of "
                   "minivl's own committed runs (`results/*.json`).")
    report.text(markdown_table())


def stage_vilbert(report, quick, progress, corpus=None, bert=None):
    """Regions from the trained detector (S04), a short ViLBERT pretraining (S07-S09), then
    VQA and referring expressions (S10) fine-tuned on it. Quick: the text stream starts from
    the tour's BERT (``bert``, with ``corpus``'s tokenizer), or from scratch without one."""
    from minivl.data.regions import RegionEncoder
    from minivl.data.vilbert_tasks import make_task, scene_parts
    from minivl.data.world import ShapesWorld
    from minivl.recipes.vilbert import pretrain_vilbert
    from minivl.recipes.vilbert_transfer import chance, finetune
    from minivl.viz.regions import detections_figure

    pick = 0 if quick else 1
    report.section("ViLBERT: two streams joined by co-attention (S03-S11)",
                   "Region tokens from a small convolutional detector trained on the shapes world "
                   "(RoI mean-pool, 5-d location, [IMG] first); a text stream and a visual stream "
                   "exchanging keys and values; pretraining by masked words, masked regions (KL to the "
                   "detector's distribution) and alignment; then one head per task. "
                   + ("Quick: the text stream starts from the BERT above (or from scratch when that "
                      "stage is skipped), and the runs are far too short to reach the targets of "
                      "lectures/08-vilbert.md: masked regions and alignment need thousands of steps "
                      "(results/vilbert_pretrain.json), the transfer tasks beat chance."
                      if quick else "The text stream starts from minivl's pretrained BERT."))
    encoder = RegionEncoder.load_default(progress=progress)
    world = ShapesWorld(image_size=32, max_objects=3, seed=0)
    scenes = world.iid_scenes(4, "test", rng=0)
    report.figure(detections_figure(world.render(scenes), encoder.encode_scenes(scenes)),
                  "vilbert_regions.png", "Region boxes and the trained detector's top classes (S04)")
    tokenizer = corpus.tokenizer if quick and corpus is not None else None
    text_init = True if not quick or tokenizer is None else (bert if bert is not None else False)
    run = pretrain_vilbert("vilbert", steps=STEPS["vilbert_pretrain"][pick], batch_size=32,
                           n_train=(200, 4000)[pick], n_val=(300, 500)[pick], eval_every=10**9,
                           bert=text_init, tokenizer=tokenizer, progress=progress)
    m = run["metrics"]
    start = m["start"]
    out = {"pretraining": {"steps": m["steps"], "parameters": m["parameters"],
                           "train seconds": round(m["train_seconds"], 1),
                           **{f"held-out {k.replace('_', ' ')} (step 0 -> end)": f"{start[k]:.3f} -> {v:.3f}"
                              for k, v in m["held_out"].items() if k.endswith(("accuracy", "agreement"))}}}
    report.table(out["pretraining"], name="vilbert_pretrain")
    fig = _terms_figure(run["terms"])
    report.figure(fig, "vilbert_pretrain_terms.png", "ViLBERT pretraining: the loss of each term (S08, S09)")
    parts = scene_parts(world, encoder, sizes=VILBERT_SIZES[pick])
    for task in ("vqa", "refexp"):
        data = make_task(task, world, run["tokenizer"], encoder, sizes=VILBERT_SIZES[pick], parts=parts,
                         max_len=run["model"].config.max_len)
        r = finetune(task, run["model"], data, steps=STEPS[f"vilbert_{task}"][pick], progress=progress)
        out[task] = {"test accuracy": r["metrics"]["test"]["accuracy"], "chance": chance(task, data["test"]),
                     "steps": r["metrics"]["steps"], "train seconds": round(r["metrics"]["train_seconds"], 1)}
        report.text(f"**{task}**")
        report.table(out[task], name=f"vilbert_{task}")
    return out


def _terms_figure(terms):
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, values in terms.items():
        ax.plot(values, lw=1, label=name)
    ax.set(xlabel="step", ylabel="loss", title="ViLBERT pretraining")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def stage_dalle(report, quick, progress):
    import numpy as np

    from minivl.models.dvae import to_uint8
    from minivl.recipes.dalle import decode, generate_codes, train_prior
    from minivl.recipes.dvae import reconstruct, train_dvae
    from minivl.viz.images import image_grid

    pick = 0 if quick else 1
    report.section("DALL-E: a discrete VAE and a prior over caption and image tokens (S19-S28)",
                   "Stage 1 turns each 32 x 32 image into a grid of codes (16 x 16 by default, 8 x 8 "
                   "with --quick); stage 2 is one "
                   "causal transformer over the padded caption, a start-of-image token and the codes, "
                   "sampled with a key/value cache and decoded by the dVAE. "
                   + ("Quick: a small dVAE and prior, trained for about two minutes: the samples show "
                      "blobs in the caption's colours, not yet its shapes (the recipe's figures: "
                      "results/dalle.json)." if quick else ""))
    # quick: an 8 x 8 grid of 128 codes (widths 16, 32, 64) at twice the recipe's learning rate (at
    # 3e-3 the 300-step codebook drew cyan, blue, purple and green all as one blue), a 3-layer prior
    small = dict(vocab_size=128, widths=(16, 32, 64), codebook_dim=32, lr=6e-3,
                 n_train=DATA["dalle"][pick]) if quick else {}
    dv = train_dvae(steps=STEPS["dalle_dvae"][pick], n_test=50, eval_every=10**9, progress=progress, **small)
    tiny = dict(dim=64, depth=3, heads=4, n_train=DATA["dalle"][pick]) if quick else {}
    r = train_prior(dv["model"], steps=STEPS["dalle_prior"][pick], eval_every=10**9, progress=progress, **tiny)
    m, d = r["metrics"], dv["metrics"]
    report.table({"dVAE grid": "x".join(map(str, d["grid"])), "dVAE held-out PSNR (dB)": round(d["psnr_test"], 2),
                  "code perplexity": round(d["perplexity"], 1),
                  "prior image loss at step 0 (held-out scenes)":
                      round(r["history"].evals[0]["held_out_scenes_image_loss"], 3),
                  "prior image loss (held-out scenes)": round(m["held_out_scenes_image_loss"], 3),
                  "prior text loss (held-out scenes)": round(m["held_out_scenes_text_loss"], 3),
                  "dVAE seconds": round(d["train_seconds"], 1), "prior seconds": round(m["train_seconds"], 1),
                  "prior parameters": m["parameters"]}, name="dalle")
    originals = dv["evals"]["test"][:8]
    report.figure(image_grid(np.concatenate([originals, to_uint8(reconstruct(dv["model"], originals))]), ncols=8),
                  "dalle_reconstructions.png", "Held-out images (top) and the dVAE's reconstructions from "
                  "their codes (bottom)")
    captions = ["a red circle.", "a blue square is above a green ring.", "a large yellow cross.",
                "a purple diamond and a cyan triangle."]
    images = decode(dv["model"], generate_codes(r["model"], r["bpe"], captions, 4, seed=0))  # (4, 4, S, S, 3)
    labels = [c if k == 0 else "" for c in captions for k in range(4)]
    report.figure(image_grid(images.reshape(16, *images.shape[2:]), labels, ncols=4), "dalle_samples.png",
                  "Four samples per caption (rows), no reranking")
    return m


def run_tour(out="runs/tour", quick=False, progress=True, only=None) -> Path:
    """Run every stage (or those named in ``only``) and write ``out/report.md``."""
    import minivl

    began, cpu_began = time.perf_counter(), time.process_time()
    report = Report(out, title="minivl tour" + (" (quick)" if quick else ""))
    report.text(f"minivl {minivl.__version__}, backend `{minivl.backend.current()}`. "
                "Every model below trained on this machine's CPU, from scratch, on the project's own data.")
    want = lambda name: only is None or name in only
    timings = {}

    cpu_timings = {}

    def timed(name, fn, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        print(f"== {name}", flush=True)
        result = fn(report, quick, progress, *args)
        timings[name] = round(time.perf_counter() - t0, 1)
        cpu_timings[name] = round(time.process_time() - c0, 1)  # every thread of this process
        report.write()  # a partial report survives an interrupted tour
        return result

    needs_corpus = want("tokenizer") or want("bert") or want("gpt") or (quick and want("vilbert"))
    corpus = timed("tokenizer", stage_tokenizer) if needs_corpus else None
    bert = timed("bert", stage_bert, corpus)["model"] if want("bert") else None
    if want("gpt"):
        timed("gpt", stage_gpt, corpus)
    if want("vit"):
        timed("vit", stage_vit)
    if want("vilbert"):
        timed("vilbert", stage_vilbert, corpus, bert)
    clip = timed("clip", stage_clip) if want("clip") else None
    if want("dalle"):
        timed("dalle", stage_dalle)
    if want("llava"):
        timed("llava", stage_llava, clip["shapes_model"] if clip else None)
    stage_summary(report)
    report.section("Timings", "Wall-clock seconds per stage, and the CPU seconds this process used "
                   "(all its threads): on a busy machine the wall time grows, the CPU time much less.")
    report.table({**{f"{k} (s)": v for k, v in timings.items()},
                  "total (s)": round(time.perf_counter() - began, 1),
                  **{f"{k} CPU (s)": v for k, v in cpu_timings.items()},
                  "total CPU (s)": round(time.process_time() - cpu_began, 1),
                  **{f"{k} threads": v for k, v in current_threads().items()},
                  "load average (1 min) at the end": round(os.getloadavg()[0], 2)},
                 name="timings")
    path = report.write()
    print(f"report: {path}")
    return path


STAGES = ("tokenizer", "bert", "gpt", "vit", "vilbert", "clip", "dalle", "llava")
