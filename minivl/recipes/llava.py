"""How minivl's LLaVA is built, trained in two stages and evaluated
(lecture S29-S36; Liu et al. 2023).

The parts (S29): ``clip_tower`` trains (once, then reads from its cache) the
CLIP whose image tower LLaVA keeps frozen; ``pretrain_lm`` trains minivl's GPT
on the project's plain text (captions, the teacher's questions and answers),
standing in for Vicuna. ``LLaVA.from_parts`` joins them with a new projector.

The stages (S34, S35), one function ``train_stage``:

* stage 1, feature alignment: vision tower and language model frozen, only
  the projector trains, on ``<image>`` + caption pairs;
* stage 2, end-to-end: vision tower frozen, projector and language model
  train on the teacher's conversations, descriptions and reasoning.

The vision tower never trains, so the patch features of every picture are
computed once and reused (``features``). A run's state goes to
``out/stage{1,2}.safetensors`` (``minivl.checkpoint``), and ``resume``
continues it exactly: batch ``s`` depends only on ``(seed, s)``.

``evaluate`` scores a model on held-out scenes (``minivl/data/llava_eval.py``);
``study`` writes the four rows of S36 (language model alone, stage 1 only,
stage 2, stage 2 with the v1.5 projector) for each seed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from minivl.checkpoint import cache_dir, load_training_state, save_training_state
from minivl.data.corpus import TextCorpus
from minivl.data.instructions import make_instruction
from minivl.data.llava_data import (
    STAGE1_INSTRUCTION,
    caption_pairs,
    chat_documents,
    format_captions,
    format_items,
    instructions,
    llava_scenes,
    make_tokenizer,
    plain_text,
    reader_documents,
    short_questions,
    statistics,
)
from minivl.data.llava_eval import (
    EVAL_TYPES,
    caption_hits,
    caption_phrases,
    described_objects,
    prf,
    short_answer,
    true_objects,
)
from minivl.data.llava_format import END, EOT, IMAGE, PAD, format_conversation, pad_batch
from minivl.data.vqa import ask
from minivl.models.llava import LLaVA
from minivl.models.vision import preprocess
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.train import History, train

MAX_LEN = 128
LR = {1: 3e-3, 2: 3e-3}  # peak learning rate of each stage (warm-up, then cosine to a tenth)
# the study's defaults (lectures/10-llava.md, S36): a GPT that reads its prompt (lm_text="reader",
# 4,000 pretraining steps, about 13 minutes on one core), stage 1 1,000 steps, stage 2 10,000
STUDY = dict(n_train=2000, lm_steps=4000, stage1_steps=1000, stage2_steps=10000, batch_size=16,
             conversations=4, lm_depth=4, image_position="after", balance_kinds=True,
             lm_text="reader", short_answers=4, short_share=0.75)
# the GPT's pretraining text: plain (question answer), in the chat template, or in the template with the
# scene stated in words where the image goes (``reader_documents``: a GPT that reads its prompt)
LM_TEXTS = ("plain", "chat", "reader")
STUDY_ROWS = ("lm_alone", "stage1", "stage2", "stage2_v15")  # S36's four rows
STUDY_CAPTIONS = 100  # held-out captions per row (stage 1's own task, minivl/data/llava_eval.py)
CLIP_STEPS = 3000  # minivl clip train's default: zero-shot 0.98, retrieval R@1 0.97 (results/llava_clip.json)


# --------------------------------------------------------------------------- parts (S29)


def clip_folder(steps=CLIP_STEPS) -> Path:
    """Where the trained default eye is cached: ``$MINIVL_CACHE/llava-clip-grid-<steps>``."""
    return cache_dir() / f"llava-clip-grid-{steps}"


def clip_tower(cache=None, steps=CLIP_STEPS, progress=True, wait=0):
    """minivl's CLIP trained on the shapes world (grid layout), from its cache when there.

    ``cache``: a folder holding ``clip.safetensors`` (``minivl clip train --out``);
    None: the default eye under ``minivl.checkpoint.cache_dir()``, trained once
    (``steps`` steps, a few minutes on one core) when absent.
    ``wait``: seconds to wait for another process that is writing the cache.
    """
    from minivl.recipes.clip import load_run, train_clip

    folder = Path(cache) if cache else clip_folder(steps)
    path = folder / "clip.safetensors"
    began = time.perf_counter()
    while wait and not path.exists() and time.perf_counter() - began < wait:
        time.sleep(10)
    time.sleep(5 if wait and path.exists() else 0)  # let the writer finish the tokenizer file
    if path.exists():
        return load_run(path)[0]
    return train_clip(task="shapes", layout="grid", steps=steps, out=folder, eval_every=10**9,
                      progress=progress)["model"]


def pretrain_lm(tokenizer, docs, steps=300, seed=0, dim=64, depth=2, heads=4, batch_size=16,
                progress=True):
    """GPT pretrained on plain-text ``docs`` (the Vicuna stand-in); returns ``(model, metrics)``.

    ``depth``: 2 blocks for the tour and the notebook; the study passes its own (``STUDY["lm_depth"]``).
    """
    from minivl.recipes.gpt import train_gpt

    n_val = max(len(docs) // 20, 20)
    corpus = TextCorpus(docs[n_val:], docs[:n_val], tokenizer)
    r = train_gpt(corpus=corpus, steps=steps, batch_size=batch_size, block_size=MAX_LEN, dim=dim, depth=depth,
                  num_heads=heads, lr=3e-3, seed=seed, progress=progress, prompts=(), eval_every=steps)
    return r["model"], r["metrics"]


# --------------------------------------------------------------------------- data


class LLaVAData:
    """Everything a run reads: scenes, pictures, features, tokenizer, examples."""

    def __init__(self, n_train=3000, n_test=300, seed=0, vocab_size=600, conversations=1,
                 balance_kinds=False, lm_text="plain", short_answers=0, short_share=0.0,
                 image_position=STUDY["image_position"]):
        if lm_text not in LM_TEXTS:
            raise ValueError(f"lm_text must be one of {LM_TEXTS}, got {lm_text!r}")
        if not 0.0 <= short_share < 1.0 or (short_share > 0) != (short_answers > 0):
            raise ValueError(f"short_share must be in [0, 1) and > 0 exactly when short_answers > 0, "
                             f"got short_share={short_share}, short_answers={short_answers}")
        self.seed, self.balance_kinds, self.lm_text = seed, balance_kinds, lm_text
        self.train_scenes, self.train_images = llava_scenes(n_train, seed)
        self.test_scenes, self.test_images = llava_scenes(n_test, seed + 1000)  # held out
        self.items = instructions(self.train_scenes, seed, conversations=conversations)
        self.captions = caption_pairs(self.train_scenes, seed)
        # stage 2's one-round short questions, drawn in batches of their own (``batches``); the
        # tokenizer and the GPT's text are those of the teacher's three kinds, as without them
        self.short_items = short_questions(self.train_scenes, seed, short_answers)
        self.short_share = short_share
        self.tokenizer = make_tokenizer(self.items, self.captions, vocab_size)
        # the Vicuna stand-in's pretraining text: "chat" writes it in the template (chat_documents);
        # "reader" also states each training scene in words where its image goes (reader_documents),
        # for the three kinds, the short questions and the stage-1 pairs
        if lm_text == "plain":
            self.docs = plain_text(self.items, self.captions)
        elif lm_text == "chat":
            self.docs = chat_documents(self.tokenizer, self.items, self.captions)
        else:
            self.docs = reader_documents(self.tokenizer, self.items + self.short_items, self.captions,
                                         self.train_scenes, image_position)
        self.train_features = self.test_features = None

    def compute_features(self, model: LLaVA, batch_size=500):
        """The frozen tower's patch features of every picture, once."""
        feats = lambda imgs: np.concatenate([model.image_features(preprocess(imgs[i:i + batch_size]))
                                             for i in range(0, len(imgs), batch_size)])
        self.train_features, self.test_features = feats(self.train_images), feats(self.test_images)
        return self

    def examples(self, stage, num_image_tokens, image=True, max_len=MAX_LEN, image_position="before"):
        """Stage 1's caption pairs or stage 2's instructions (those that fit in ``max_len``)."""
        if stage == 1:
            out = format_captions(self.tokenizer, self.captions, num_image_tokens, image, image_position)
        else:
            out = format_items(self.tokenizer, self.items, num_image_tokens, image, image_position)
        return [e for e in out if len(e.formatted) <= max_len]

    def short_examples(self, num_image_tokens, image=True, image_position="before"):
        """Stage 2's one-round short questions (``short_questions``), formatted."""
        return format_items(self.tokenizer, self.short_items, num_image_tokens, image, image_position)

    def statistics(self, num_image_tokens=9):
        out = statistics(self.items, self.examples(2, num_image_tokens))
        if self.short_items:
            out["short"] = statistics(self.short_items, self.short_examples(num_image_tokens))
            out["short"]["share_of_batches"] = self.short_share
        return out


def kind_weights(examples):
    """Sampling probabilities that give every kind the same share of the batches."""
    kinds = [e.kind for e in examples]
    count = {k: kinds.count(k) for k in set(kinds)}
    return np.array([1.0 / (len(count) * count[k]) for k in kinds])


def batches(examples, features, pad_id, batch_size, seed, start=0, balance_kinds=False, short=(),
            short_share=0.0):
    """Random batches ``(features | None, ids, labels)`` forever; batch s depends on (seed, s).

    ``balance_kinds``: draw each kind (conversation, detail, reasoning) equally
    often, however many samples of it there are; otherwise every sample equally.
    ``short``, ``short_share``: that share of the batches is drawn from the
    examples ``short`` alone (one-round questions: short sequences, so cheap
    batches; LLaVA-1.5 too groups its batches by length and modality).
    """
    if short_share and not short:
        raise ValueError(f"short_share={short_share} needs short examples, got none")
    step = start
    p = kind_weights(examples) if balance_kinds else None
    while True:
        step += 1
        rng = np.random.default_rng([seed, step])
        if short_share and np.random.default_rng([seed, step, 2]).random() < short_share:
            pool, pick = short, rng.choice(len(short), batch_size, replace=False)
        else:
            pool, pick = examples, rng.choice(len(examples), batch_size, replace=False, p=p)
        chosen = [pool[i] for i in pick]
        ids, labels = pad_batch([e.formatted for e in chosen], pad_id)
        feats = None if features is None else features[[e.scene_index for e in chosen]]
        yield feats, ids, labels


# --------------------------------------------------------------------------- stages (S34, S35)


def freeze_for_stage(model: LLaVA, stage: int) -> LLaVA:
    """Stage 1: only the projector trains; stage 2: projector and LM. The eye never trains."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    model.vision.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.lm.requires_grad_(stage == 2)
    return model


def train_stage(model, data: LLaVAData, stage, steps, batch_size=32, lr=None, seed=0, image=True,
                out=None, resume=None, stop_after=None, progress=True, desc=None, evaluate=None,
                eval_every=0) -> History:
    """Train ``model`` for stage ``stage`` (``image=False``: the text-only baseline, LM alone).

    ``evaluate()`` (a dict of metrics), every ``eval_every`` steps: learning curves in ``History.evals``.
    """
    freeze_for_stage(model, stage)
    lr = lr or LR[stage]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = WarmupCosineLR(optimizer, steps, min(30, steps - 1), min_lr=lr / 10)
    begin = load_training_state(resume, model, optimizer, scheduler) if resume else 0
    end = min(steps, stop_after or steps)
    n = model.config.num_image_tokens
    feats = data.train_features if image else None
    examples = data.examples(stage, n, image, model.config.max_len, model.config.image_position)
    short = data.short_examples(n, image, model.config.image_position) if stage == 2 else ()
    stream = batches(examples, feats, data.tokenizer.special_tokens[PAD],
                     batch_size, seed, begin, balance_kinds=data.balance_kinds and stage == 2,
                     short=short, short_share=data.short_share if stage == 2 else 0.0)
    path = None if out is None else Path(out) / f"stage{stage}.safetensors"

    def save(step):
        save_training_state(path, model, optimizer, scheduler, step, stage=stage, image=image)
        data.tokenizer.save(Path(out) / "tokenizer.json")

    history = History()
    if end > begin:
        history = train(model, lambda m, b: m.loss(*b), stream, optimizer, end - begin, scheduler,
                        clip_norm=1.0, progress=progress, desc=desc or f"llava stage {stage}",
                        evaluate=evaluate, eval_every=eval_every,
                        on_step=(lambda s: save(begin + s) if (begin + s) % 200 == 0 else None)
                        if path else None)
        history.steps = [begin + s for s in history.steps]
    if path:
        save(end)
    return history


# --------------------------------------------------------------------------- evaluation (S36)


def _generate_all(model, tokenizer, prompts, features, max_new_tokens, batch_size=64):
    """Greedy replies to formatted prompts (grouped by length, so no padding is needed)."""
    stop = tokenizer.special_tokens[END]
    groups = defaultdict(list)
    for i, p in enumerate(prompts):
        groups[len(p)].append(i)
    replies = [None] * len(prompts)
    for _, idx in sorted(groups.items()):
        for k in range(0, len(idx), batch_size):
            chunk = idx[k:k + batch_size]
            ids = np.stack([prompts[i].ids for i in chunk])
            feats = None if features is None else features[chunk]
            out = model.generate(ids, feats, max_new_tokens, stop_id=stop)
            for i, row in zip(chunk, out):
                row = list(row)
                replies[i] = tokenizer.decode(row[: row.index(stop)] if stop in row else row).strip()
    return replies


def held_out_questions(scenes, n_per_type, rng) -> list:
    """``n_per_type`` short questions of each of ``EVAL_TYPES``, each on a scene drawn at random from
    ``scenes``: ``(scene index, question)`` pairs, type by type."""
    questions = []
    for qtype in EVAL_TYPES:
        got = 0
        while got < n_per_type:
            i = int(rng.integers(len(scenes)))
            q = ask(scenes[i], qtype, rng)
            if q is not None:
                questions.append((i, q))
                got += 1
    return questions


def evaluate_short(model, data: LLaVAData, image=True, n_per_type=60, seed=0, rng=None) -> dict:
    """Short-answer accuracy by type (``n_per_type`` questions each) and overall, on held-out scenes."""
    rng = np.random.default_rng([seed, 36]) if rng is None else rng
    tok, n = data.tokenizer, model.config.num_image_tokens
    scenes, feats = data.test_scenes, data.test_features
    fmt = lambda q: format_conversation(tok, [(q, None)], n, image, image_position=model.config.image_position)
    questions = held_out_questions(scenes, n_per_type, rng)
    prompts = [fmt(q.text[0].upper() + q.text[1:]) for _, q in questions]
    replies = _generate_all(model, tok, prompts, feats[[i for i, _ in questions]] if image else None, 24)
    right = defaultdict(list)
    for (_, q), reply in zip(questions, replies):
        right[q.qtype].append(short_answer(q, reply) == q.answer)
    out = {f"short_{t}": float(np.mean(right[t])) for t in EVAL_TYPES}
    out["short_answer"] = float(np.mean([v for t in EVAL_TYPES for v in right[t]]))
    return out


def evaluate(model, data: LLaVAData, image=True, n_per_type=60, n_describe=100, n_reason=100,
             seed=0, n_caption=None) -> dict:
    """Short-answer accuracy by type, description P/R/F1, reasoning accuracy and caption precision
    on held-out scenes (``n_caption`` captions; None: as many as descriptions)."""
    rng = np.random.default_rng([seed, 36])
    tok, n = data.tokenizer, model.config.num_image_tokens
    scenes, feats = data.test_scenes, data.test_features
    fmt = lambda q: format_conversation(tok, [(q, None)], n, image, image_position=model.config.image_position)
    out = evaluate_short(model, data, image, n_per_type, seed, rng)  # first: the same draws as before
    # detailed descriptions
    idx = rng.choice(len(scenes), min(n_describe, len(scenes)), replace=False)
    prompts = [fmt("Describe the image in detail.") for _ in idx]
    replies = _generate_all(model, tok, prompts, feats[idx] if image else None, MAX_LEN)
    for suffix, located in (("", False), ("_located", True)):
        scores = prf([(described_objects(r, located), true_objects(scenes[i], located))
                      for i, r in zip(idx, replies)])
        out.update({f"describe_{k}{suffix}": v for k, v in scores.items()})
    # complex reasoning
    made = [(i, make_instruction(scenes[i], int(i), "reasoning", rng)) for i in
            rng.choice(len(scenes), min(n_reason, len(scenes)), replace=False)]
    made = [(i, m.turns[0]) for i, m in made if m is not None]
    prompts = [fmt(q) for _, (q, _) in made]
    replies = _generate_all(model, tok, prompts, feats[[i for i, _ in made]] if image else None, 48)
    out["reasoning"] = float(np.mean([r == a for (_, (_, a)), r in zip(made, replies)]))
    out["example"] = {"instruction": made[0][1][0], "reply": replies[0], "teacher": made[0][1][1]}
    out.update(caption_precision(model, data, image, n_describe if n_caption is None else n_caption, seed))
    return out


def caption_precision(model, data: LLaVAData, image=True, n=100, seed=0) -> dict:
    """Stage 1's own task (S34) on ``n`` held-out scenes: the reply to the stage-1 instruction,
    cut at the end of turn or at the end of the language model's document (stage 1's GPT never
    learned the template's end), and the share of the objects it names that are in the picture.

    Its own random stream, so the other metrics of ``evaluate`` are those it gave before.
    """
    if n < 1:
        return {}
    scenes, feats = data.test_scenes, data.test_features
    idx = np.random.default_rng([seed, 34, 36]).choice(len(scenes), min(n, len(scenes)), replace=False)
    prompt = format_conversation(data.tokenizer, [(STAGE1_INSTRUCTION, None)], model.config.num_image_tokens,
                                 image, image_position=model.config.image_position)
    replies = _generate_all(model, data.tokenizer, [prompt] * len(idx), feats[idx] if image else None, 40)
    replies = [r.split(EOT)[0].strip() for r in replies]
    named = [caption_phrases(r) for r in replies]
    hits = sum(caption_hits(p, scenes[i]) for p, i in zip(named, idx))
    total = sum(len(p) for p in named)
    return {"caption_precision": hits / total if total else 0.0,
            "caption_objects_named": total / len(idx),
            "caption_example": {"reply": replies[0], "scene": [o.name for o in scenes[idx[0]].objects]}}


# --------------------------------------------------------------------------- the study


def build(data: LLaVAData, clip, gpt, projector="linear", image_position="before") -> LLaVA:
    return LLaVA.from_parts(clip, gpt, data.tokenizer.special_tokens[IMAGE], projector, image_position)


def study(seed=0, n_train=STUDY["n_train"], n_test=200, lm_steps=STUDY["lm_steps"],
          stage1_steps=STUDY["stage1_steps"], stage2_steps=STUDY["stage2_steps"],
          batch_size=STUDY["batch_size"], stage2_lr=None, clip_cache=None, clip_steps=CLIP_STEPS,
          progress=True, out=None, eval_sizes=(60, 60, 60), wait_for_clip=0, on_row=None,
          conversations=STUDY["conversations"], rows=STUDY_ROWS, lm_depth=STUDY["lm_depth"],
          image_position=STUDY["image_position"], balance_kinds=STUDY["balance_kinds"],
          lm_text=STUDY["lm_text"], short_answers=STUDY["short_answers"],
          short_share=STUDY["short_share"], curve_every=0) -> dict:
    """The four rows of S36 for one seed: LM alone, stage 1, stage 2, stage 2 (v1.5).

    ``on_row(partial)`` is called after every row with the result so far.
    ``rows``: which of ``STUDY_ROWS`` to run (the others can run in another
    process; ``minivl llava study --merge`` joins the rows of one seed).
    ``curve_every``: also measure short answers by type (40 per type) every
    that many stage-2 steps, kept as each row's ``curve``.
    """
    if not rows or set(rows) - set(STUDY_ROWS):
        raise ValueError(f"rows must be some of {STUDY_ROWS}, got {rows!r}")
    began = time.perf_counter()
    manual_seed(seed)
    data = LLaVAData(n_train, n_test, seed, conversations=conversations, balance_kinds=balance_kinds,
                     lm_text=lm_text, short_answers=short_answers, short_share=short_share,
                     image_position=image_position)
    gpt, lm_metrics = pretrain_lm(data.tokenizer, data.docs, lm_steps, seed, depth=lm_depth, progress=progress)
    clip = clip_tower(clip_cache, clip_steps, progress, wait_for_clip)
    data.compute_features(build(data, clip, gpt))
    wanted, rows, seconds = rows, {}, {}
    kw = dict(batch_size=batch_size, seed=seed, progress=progress)
    ev = dict(n_per_type=eval_sizes[0], n_describe=eval_sizes[1], n_reason=eval_sizes[2], seed=seed,
              n_caption=STUDY_CAPTIONS)

    report = lambda: {"seed": seed, "rows": rows, "lm_pretraining": lm_metrics, "seconds": seconds,
                      "statistics": data.statistics(), "total_seconds": time.perf_counter() - began,
                      "steps": {"lm": lm_steps, "stage1": stage1_steps, "stage2": stage2_steps,
                                "batch_size": batch_size, "clip": clip_steps,
                                "lr": {"stage1": LR[1], "stage2": stage2_lr or LR[2]}},
                      "data": {"train_scenes": n_train, "test_scenes": n_test,
                               "conversations_per_scene": conversations, "lm_depth": lm_depth,
                               "image_position": image_position, "balance_kinds": balance_kinds,
                               "lm_text": lm_text, "short_answers_per_scene": short_answers,
                               "short_share": short_share,
                               "eval_sizes": list(eval_sizes)}, "rows_run": list(wanted)}

    def curve(model, image=True):  # short answers by type during stage 2 (``curve_every``)
        if not curve_every:
            return {}
        return dict(evaluate=lambda: {t: evaluate_short(model, data, image, 40, seed)[f"short_{t}"]
                                      for t in EVAL_TYPES}, eval_every=curve_every)

    if "lm_alone" in wanted:
        t = time.perf_counter()
        blind = build(data, clip, gpt, image_position=image_position)
        h = train_stage(blind, data, 2, stage2_steps, lr=stage2_lr, image=False, desc="llava text only",
                        **kw, **curve(blind, False))
        rows["lm_alone"] = evaluate(blind, data, image=False, **ev)
        if h.evals:
            rows["lm_alone"]["curve"] = h.evals
        seconds["lm_alone"] = time.perf_counter() - t
        if on_row:
            on_row(report())

    for name, projector in (("stage2", "linear"), ("stage2_v15", "mlp")):
        if name not in wanted and not (projector == "linear" and "stage1" in wanted):
            continue
        t = time.perf_counter()
        model = build(data, clip, gpt, projector, image_position)
        h1 = train_stage(model, data, 1, stage1_steps, desc=f"{name} stage 1",
                         out=out if projector == "linear" else None, **kw)
        if projector == "linear" and "stage1" in wanted:
            rows["stage1"] = evaluate(model, data, **ev)
            rows["stage1"]["final_loss"] = float(np.mean(h1.loss[-20:]))
            if on_row:
                on_row(report())
        if name not in wanted:
            continue
        h2 = train_stage(model, data, 2, stage2_steps, lr=stage2_lr, desc=f"{name} stage 2",
                         out=out if projector == "linear" else None, **kw, **curve(model))
        rows[name] = evaluate(model, data, **ev)
        rows[name]["final_loss"] = float(np.mean(h2.loss[-20:]))
        if h2.evals:
            rows[name]["curve"] = h2.evals
        seconds[name] = time.perf_counter() - t
        if on_row:
            on_row(report())
    return report()


# --------------------------------------------------------------------------- the command's runs


def run_stage(stage, out="runs/llava", steps=None, batch_size=STUDY["batch_size"], projector="linear",
              seed=0, n_train=STUDY["n_train"], lm_steps=STUDY["lm_steps"], clip_cache=None, resume=None,
              progress=True, conversations=STUDY["conversations"], lm_depth=STUDY["lm_depth"],
              image_position=STUDY["image_position"], balance_kinds=STUDY["balance_kinds"],
              lm_text=STUDY["lm_text"], short_answers=STUDY["short_answers"], short_share=STUDY["short_share"]):
    """``minivl llava train --stage N``: stage 1 from CLIP + a pretrained GPT (cached in ``out``),
    stage 2 from ``out/stage1.safetensors``; returns ``(model, data, history)``."""
    from minivl.checkpoint import load_checkpoint, save_checkpoint
    from minivl.models.gpt import GPT

    out = Path(out)
    data = LLaVAData(n_train, 50, seed, conversations=conversations, balance_kinds=balance_kinds,
                     lm_text=lm_text, short_answers=short_answers, short_share=short_share,
                     image_position=image_position)
    if stage == 1:
        gpt_path = out / "gpt.safetensors"
        if gpt_path.exists():
            gpt = load_checkpoint(GPT, gpt_path)
        else:
            gpt = pretrain_lm(data.tokenizer, data.docs, lm_steps, seed, depth=lm_depth, progress=progress)[0]
            save_checkpoint(gpt, gpt_path)
        if gpt.config.vocab_size != data.tokenizer.vocab_size:
            raise ValueError(f"{gpt_path} has {gpt.config.vocab_size} token ids, this run's tokenizer "
                             f"{data.tokenizer.vocab_size}: use the same --seed, --n-train and --conversations")
        model = build(data, clip_tower(clip_cache, progress=progress), gpt, projector, image_position)
    else:
        first = out / "stage1.safetensors"
        if not first.exists() and not resume:
            raise ValueError(f"stage 2 starts from {first}: run 'minivl llava train --stage 1' first")
        model = load_checkpoint(LLaVA, resume or first)
        if model.config.vocab_size != data.tokenizer.vocab_size:
            raise ValueError(f"{first} has {model.config.vocab_size} token ids, this run's tokenizer "
                             f"{data.tokenizer.vocab_size}: use the same --seed, --n-train and --conversations")
    if resume and stage == 1:
        model = load_checkpoint(LLaVA, resume)
    data.compute_features(model)
    steps = steps or STUDY[f"stage{stage}_steps"]
    history = train_stage(model, data, stage, steps, batch_size, seed=seed, out=out, resume=resume,
                          progress=progress)
    return model, data, history
