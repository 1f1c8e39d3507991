"""Why LLaVA's stage 1 does not align (lecture S34; a diagnosis, not part of the recipe).

Stage 1 trains only the projector, between the frozen CLIP eye and the
frozen GPT, on ``<image>`` + caption pairs; after it the model's captions name
almost nothing that is in the picture, while ClipCap (S18) steers a frozen
GPT from the CLIP embedding. Each check below removes one difference between
the two and asks whether the frozen GPT can then be steered:

* ``template_costs``: the frozen GPT's loss on held-out captions, as the
  plain text it was pretrained on and in the chat template (no image): what
  the template's ``</s>`` and first word cost;
* ``free_prefix``: the oracle with no projector at all: nine free vectors per
  picture, optimised directly on a handful of training pictures (in the
  template, or ``plain``: ``<image>`` + caption + end of text, as LLaVA-1.5's
  stage 1 writes its pairs);
* ``words_in_prompt``: the scene's objects written out in the prompt, in
  words, where the image would go: does the GPT's caption use them?
* ``reads_words``: held-out short questions answered by the GPT alone with
  the scene written in words where the image goes (``scene_words``), with
  another scene's words, or with none: a GPT that reads its prompt answers
  from its own scene's words and is misled by another's;
* ``reader_trial``: the GPT pretrained on the reader documents
  (``lm_text="reader"``), then stage 1 with the study's recipe, scored as
  the study's stage-1 row, and whether the projected patches do the words' work;
* ``projector_fit``: stage 1 itself, on the eye's features, on ``oracle``
  features (each cell's true attributes one-hot), or through a ``table``
  (one free prefix per size-colour-shape combination, so nonlinear in the
  attributes), with the study's captions or ``fixed``-form ones (every
  object in reading order, "a large red ring and a small blue cross."), on
  all scenes or on one-object scenes only. Scored by caption precision
  (``minivl/recipes/llava.py::caption_precision``'s rule) and by the
  held-out caption loss with each scene's own features against another
  scene's: the image is used only if its own features lower the loss.

``python -m minivl.recipes.llava_stage1 --out results/llava_stage1_diagnosis.json``;
``python -m minivl.recipes.llava_stage1 --reader --lm-steps 2000 --out ...`` for ``reader_trial``.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from minivl.data.language import join_list
from minivl.data.llava_data import (
    STAGE1_INSTRUCTION,
    caption_pairs,
    format_captions,
    reading_order,
    scene_words,
    stage1_turns,
)
from minivl.data.llava_eval import EVAL_TYPES, caption_hits, caption_phrases, short_answer
from minivl.data.llava_format import END, EOT, IGNORE, IMAGE, PAD, Formatted, format_conversation, pad_batch
from minivl.data.shapes import COLOURS, SHAPES, SIZES
from minivl.models.llava import Projector
from minivl.optim import AdamW, WarmupCosineLR
from minivl.recipes import llava as L
from minivl.tensor import no_grad
from minivl.train import train

N_CELLS = 9


def fixed_caption(scene) -> str:
    """Every object, in reading order, in one form: "a large red ring and a small blue cross."."""
    return join_list([f"a {SIZES[o.size]} {COLOURS[o.colour]} {SHAPES[o.shape]}"
                      for o in reading_order(scene)]) + "."


def table_features(scenes) -> np.ndarray:
    """``(n, 9, 72 * 9)`` one-hot of (the first object's size-colour-shape, cell): through a Linear
    projector, one free prefix of nine vectors per combination (one-object scenes)."""
    n_combos = len(SIZES) * len(COLOURS) * len(SHAPES)
    out = np.zeros((len(scenes), N_CELLS, n_combos * N_CELLS), np.float32)
    for i, s in enumerate(scenes):
        o = s.objects[0]
        combo = (o.size * len(COLOURS) + o.colour) * len(SHAPES) + o.shape
        out[i, np.arange(N_CELLS), combo * N_CELLS + np.arange(N_CELLS)] = 1.0
    return out


def identity_features(n) -> np.ndarray:
    """``(n, 9, n * 9)`` one-hot of (picture, cell): through a Linear projector, free vectors."""
    return np.eye(n * N_CELLS, dtype=np.float32).reshape(n, N_CELLS, n * N_CELLS)


def with_projector(model, in_dim, kind="linear"):
    """A copy of ``model`` whose projector reads ``in_dim`` features (the oracles' one-hots)."""
    model = copy.deepcopy(model)
    model.projector = Projector(kind, in_dim, model.config.dim)
    model.config.vision_dim = in_dim
    return model


class Example:
    def __init__(self, scene_index, formatted):
        self.scene_index, self.formatted = scene_index, formatted


def examples(tok, pairs, fmt="template"):
    """``(scene index, caption)`` pairs as stage-1 examples: ``template`` (the recipe's) or ``plain``
    (``<image>`` x 9, the caption, ``<|endoftext|>``; loss on caption and end)."""
    if fmt == "template":
        return [Example(e.scene_index, e.formatted) for e in format_captions(tok, pairs, N_CELLS, True, "after")]
    out = []
    for i, c in pairs:
        image, text = [tok.special_tokens[IMAGE]] * N_CELLS, tok.encode(" " + c) + [tok.special_tokens[EOT]]
        out.append(Example(i, Formatted(np.array(image + text), np.array([IGNORE] * N_CELLS + text), [])))
    return out


def fit(model, exs, features, pad, steps, lr, batch_size=16, seed=0) -> float:
    """Stage 1 (only the projector trains) on ``exs``; the mean loss of the last 20 steps."""
    L.freeze_for_stage(model, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    sched = WarmupCosineLR(opt, steps, min(30, steps - 1), min_lr=lr / 10)
    h = train(model, lambda m, b: m.loss(*b), L.batches(exs, features, pad, batch_size, seed), opt, steps,
              sched, clip_norm=1.0, progress=False)
    return float(np.mean(h.loss[-20:]))


def token_losses(model, exs, features, pad, batch_size=64):
    """Per supervised token: ``(target ids, losses)`` over ``exs``."""
    ys, ls = [], []
    with no_grad():
        for k in range(0, len(exs), batch_size):
            chunk = exs[k:k + batch_size]
            ids, labels = pad_batch([e.formatted for e in chunk], pad)
            f = None if features is None else features[[e.scene_index for e in chunk]]
            logits = model.forward_features(f, ids).numpy()[:, :-1].astype(np.float64)
            logits -= logits.max(-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            y = labels[:, 1:]
            keep = y != IGNORE
            ys.append(y[keep])
            ls.append(-logp[keep, y[keep]])
    return np.concatenate(ys), np.concatenate(ls)


def word_ids(tok, words):
    return [tok.encode(" " + w)[0] for w in words if len(tok.encode(" " + w)) == 1]


def loss_summary(tok, model, exs, features, pad) -> dict:
    """Mean loss of all caption tokens, and of its colour and shape words."""
    y, loss = token_losses(model, exs, features, pad)
    out = {"all": float(loss.mean())}
    for name, words in (("colour_words", COLOURS), ("shape_words", SHAPES)):
        hit = np.isin(y, word_ids(tok, words))
        out[name] = float(loss[hit].mean()) if hit.any() else None
    return out


def precision(model, tok, scenes, features, fmt="template", n=100) -> dict:
    """Greedy captions of ``n`` scenes (cut at the end of text), scored as ``caption_precision``."""
    scenes, features = scenes[:n], features[:n]
    if fmt == "template":
        prompt = format_conversation(tok, [(STAGE1_INSTRUCTION, None)], N_CELLS, True, image_position="after")
    else:
        prompt = Formatted(np.array([tok.special_tokens[IMAGE]] * N_CELLS), None, [])
    replies = [r.split(EOT)[0].strip() for r in L._generate_all(model, tok, [prompt] * len(scenes), features, 40)]
    named = [caption_phrases(r) for r in replies]
    total = sum(map(len, named))
    return {"caption_precision": sum(caption_hits(p, s) for p, s in zip(named, scenes)) / total if total else 0.0,
            "objects_named": total / len(scenes), "examples": replies[:3],
            "truth": [[o.name for o in s.objects] for s in scenes[:3]]}


# --------------------------------------------------------------------------- the checks


def template_costs(data, model, pad) -> dict:
    """Held-out caption loss of the frozen GPT without an image: plain text as in its pretraining
    ("Write a short caption for the image. a red ring.<|endoftext|>") against the template."""
    tok, eot = data.tokenizer, data.tokenizer.special_tokens[EOT]
    plain = []
    for i, c in data.test_captions:
        head, tail = tok.encode(STAGE1_INSTRUCTION), tok.encode(" " + c) + [eot]
        plain.append(Example(i, Formatted(np.array(head + tail), np.array([IGNORE] * len(head) + tail), [])))
    templ = [Example(e.scene_index, e.formatted)
             for e in format_captions(tok, data.test_captions, N_CELLS, False, "after")]
    y, loss = token_losses(model, templ, None, pad)
    first = np.r_[True, y[:-1] == tok.special_tokens[END]]  # the answer's first token follows the last </s>
    return {"plain_text": float(token_losses(model, plain, None, pad)[1].mean()), "template": float(loss.mean()),
            "template_end_token": float(loss[y == tok.special_tokens[END]].mean()),
            "template_first_token": float(loss[first].mean()),
            "example": tok.decode(templ[0].formatted.ids.tolist())}


def free_prefix(data, model, pad, fmt="template", n=32, steps=300, lr=1e-2) -> dict:
    """Nine free vectors per picture for ``n`` training pictures (each with its one caption)."""
    tok = data.tokenizer
    m = with_projector(model, n * N_CELLS)
    exs = examples(tok, data.captions[:n], fmt)
    feats = identity_features(n)
    out = {"train_loss": fit(m, exs, feats, pad, steps, lr)}
    out.update(precision(m, tok, data.train_scenes[:n], feats, fmt, n))
    return out


def words_in_prompt(data, model, pad, n=200) -> dict:
    """Colour- and shape-word loss of held-out template captions (no image) when the prompt also
    lists the scene's objects in words: none, this scene's, or another scene's."""
    tok = data.tokenizer
    words = lambda s: ", ".join(o.name for o in s.objects)
    pairs = data.test_captions[:n]
    out = {}
    for name, shift in (("none", None), ("own_scene", 0), ("another_scene", 1)):
        exs = []
        for k, (i, c) in enumerate(pairs):
            prompt = STAGE1_INSTRUCTION
            if shift is not None:
                prompt += "\n" + words(data.test_scenes[pairs[(k + shift) % len(pairs)][0]])
            turns = [(prompt, stage1_turns(c)[0][1])]
            exs.append(Example(i, format_conversation(tok, turns, image=False)))
        out[name] = loss_summary(tok, model, exs, None, pad)
    return out


def reads_words(data, model, n_per_type=40, seed=0) -> dict:
    """Held-out short-answer accuracy of the GPT alone (``model.lm``, no image) with the scene's own
    words where the image goes, another scene's words, or no words (the prompt without the slot)."""
    rng = np.random.default_rng([seed, 36, 2])
    scenes, tok, pos = data.test_scenes, data.tokenizer, model.config.image_position
    questions = L.held_out_questions(scenes, n_per_type, rng)
    out = {}
    for name, shift in (("own_words", 0), ("other_words", 1), ("no_words", None)):
        prompts = []
        for i, q in questions:
            turns = [(q.text[0].upper() + q.text[1:], None)]
            if shift is None:
                prompts.append(format_conversation(tok, turns, image=False))
            else:
                words = scene_words(scenes[(i + shift) % len(scenes)])
                prompts.append(format_conversation(tok, turns, image_position=pos, scene_text=words))
        replies = L._generate_all(model, tok, prompts, None, 24)
        right = [short_answer(q, r) == q.answer for (_, q), r in zip(questions, replies)]
        out[name] = {"short_answer": float(np.mean(right)),
                     **{t: float(np.mean([r for (_, q), r in zip(questions, right) if q.qtype == t]))
                        for t in EVAL_TYPES}}
    return out


def reader_trial(seed=0, lm_steps=2000, stage1_steps=(200,), n_train=L.STUDY["n_train"],
                 progress=True, clip=None) -> dict:
    """The GPT pretrained on the reader documents for ``lm_steps``, then the study's stage 1
    (each of ``stage1_steps`` steps of 16, projector only, from the same fresh projector),
    evaluated as the study's stage-1 row; plus ``reads_words`` before stage 1 and the held-out
    caption loss with each scene's own patches against the next scene's (the image is used only
    if its own patches lower it)."""
    from minivl.random import manual_seed

    began = time.perf_counter()
    manual_seed(seed)
    stage1_steps = (stage1_steps,) if isinstance(stage1_steps, int) else tuple(stage1_steps)
    data, model, metrics = setup(seed, "reader", n_train, lm_steps, clip)
    pad = data.tokenizer.special_tokens[PAD]
    out = {"seed": seed, "lm_steps": lm_steps, "stage1_steps": list(stage1_steps), "lm_pretraining": metrics,
           "documents": len(data.docs), "example_document": data.tokenizer.decode(data.docs[0].tolist())}
    out["reads_words"] = reads_words(data, model, seed=seed)
    if progress:
        print("reads words", {k: round(v["short_answer"], 3) for k, v in out["reads_words"].items()}, flush=True)
    out["pretraining_seconds"] = time.perf_counter() - began
    fresh = copy.deepcopy(model)
    for steps in stage1_steps:
        model = copy.deepcopy(fresh)
        h = L.train_stage(model, data, 1, steps, batch_size=L.STUDY["batch_size"], seed=seed, progress=progress)
        r = out[f"stage1_{steps}_steps"] = {"final_loss": float(np.mean(h.loss[-20:]))}
        held = examples(data.tokenizer, data.test_captions[:200])
        other = np.roll(np.arange(len(data.test_features)), 1)
        r["held_out_loss_own_features"] = loss_summary(data.tokenizer, model, held, data.test_features, pad)
        r["held_out_loss_other_features"] = loss_summary(data.tokenizer, model, held, data.test_features[other], pad)
        r["row"] = L.evaluate(model, data, n_per_type=60, n_describe=60, n_reason=60, seed=seed,
                              n_caption=L.STUDY_CAPTIONS)
        if progress:
            e = r["row"]
            print(f"stage 1, {steps} steps: caption precision {e['caption_precision']:.3f} "
                  f"({e['caption_objects_named']:.1f} named), short answers {e['short_answer']:.3f}, "
                  f"F1 {e['describe_f1']:.2f}", flush=True)
    out["total_seconds"] = time.perf_counter() - began
    return out


def projector_fit(data, model, pad, features="clip", captions="study", scenes="all", projector="linear",
                  steps=1000, lr=3e-3) -> dict:
    """Stage 1 on ``features`` ("clip", "oracle" or "table") and ``captions`` ("study" or "fixed"),
    on "all" scenes or "one"-object scenes; held-out loss with own / another scene's features."""
    from minivl.recipes.llava_diagnose import oracle_features

    tok = data.tokenizer
    train_pairs = data.captions if captions == "study" else [(i, fixed_caption(s)) for i, s in
                                                             enumerate(data.train_scenes)]
    test_pairs = data.test_captions if captions == "study" else [(i, fixed_caption(s)) for i, s in
                                                                 enumerate(data.test_scenes)]
    if scenes == "one":
        train_pairs = [(i, c) for i, c in train_pairs if len(data.train_scenes[i].objects) == 1]
        test_pairs = [(i, c) for i, c in test_pairs if len(data.test_scenes[i].objects) == 1]
    if features == "clip":
        m, ftr, fte = copy.deepcopy(model), data.train_features, data.test_features
        if projector != "linear":
            m = with_projector(model, ftr.shape[-1], projector)
    else:
        make = (lambda s: oracle_features(s, 64)) if features == "oracle" else table_features
        ftr, fte = make(data.train_scenes), make(data.test_scenes)
        m = with_projector(model, ftr.shape[-1], projector)
    lr = 1e-2 if features == "table" else lr
    exs = [e for e in examples(tok, train_pairs) if len(e.formatted) <= m.config.max_len]
    out = {"pairs": len(exs), "train_loss": fit(m, exs, ftr, pad, steps, lr)}
    held = examples(tok, test_pairs[:200])
    other = np.roll(np.arange(len(fte)), 1)  # each scene gets the next scene's features
    out["held_out_loss_own_features"] = loss_summary(tok, m, held, fte, pad)
    out["held_out_loss_other_features"] = loss_summary(tok, m, held, fte[other], pad)
    idx = [i for i, _ in test_pairs][:100]
    out.update(precision(m, tok, [data.test_scenes[i] for i in idx], fte[idx]))
    return out


def setup(seed, lm_text, n_train=L.STUDY["n_train"], lm_steps=500, clip=None):
    """The study's data, GPT (``lm_text``: "plain", "chat" or "reader") and the eye's features."""
    data = L.LLaVAData(n_train, 200, seed, conversations=L.STUDY["conversations"],
                       balance_kinds=True, lm_text=lm_text, short_answers=L.STUDY["short_answers"],
                       short_share=L.STUDY["short_share"], image_position=L.STUDY["image_position"])
    gpt, metrics = L.pretrain_lm(data.tokenizer, data.docs, lm_steps, seed,
                                 depth=L.STUDY["lm_depth"], progress=False)
    model = L.build(data, clip or L.clip_tower(progress=False), gpt, "linear", L.STUDY["image_position"])
    data.compute_features(model)
    data.test_captions = caption_pairs(data.test_scenes, seed + 1000)
    return data, model, metrics


FITS = (  # (features, captions, scenes, projector)
    ("clip", "study", "all", "linear"),
    ("oracle", "study", "all", "linear"),
    ("table", "study", "one", "linear"),
    ("table", "fixed", "one", "linear"),
    ("oracle", "fixed", "one", "linear"),
    ("clip", "fixed", "one", "linear"),
    ("clip", "fixed", "all", "linear"),
    ("clip", "fixed", "all", "mlp"),
)


def diagnose(seed=0, progress=True, n_train=L.STUDY["n_train"], lm_steps=500, fit_steps=1000,
             prefix_steps=300, clip=None) -> dict:
    from minivl.random import manual_seed

    began = time.perf_counter()
    out = {"seed": seed}
    for lm_text in ("plain", "chat"):
        manual_seed(seed)
        data, model, metrics = setup(seed, lm_text, n_train, lm_steps, clip)
        pad = data.tokenizer.special_tokens[PAD]
        r = out[f"{lm_text}_gpt"] = {"lm_pretraining": metrics, "template_costs": template_costs(data, model, pad),
                                    "words_in_prompt": words_in_prompt(data, model, pad)}
        formats = ("template", "plain") if lm_text == "plain" else ("template",)
        r["free_prefix"] = {f: free_prefix(data, model, pad, f, steps=prefix_steps) for f in formats}
        if progress:
            print(lm_text, r["template_costs"], {f: v["train_loss"] for f, v in r["free_prefix"].items()}, flush=True)
        if lm_text == "chat":  # the GPT that reads the template: stage 1 itself, variant by variant
            r["projector_fit"] = {}
            for f, c, s, p in FITS:
                key = f"{f}_features_{c}_captions_{s}_scenes_{p}"
                r["projector_fit"][key] = projector_fit(data, model, pad, f, c, s, p, fit_steps)
                if progress:
                    v = r["projector_fit"][key]
                    print(key, round(v["caption_precision"], 3), v["held_out_loss_own_features"],
                          v["held_out_loss_other_features"], flush=True)
    out["total_seconds"] = time.perf_counter() - began
    return out


if __name__ == "__main__":
    import argparse
    import os

    from minivl.commands._options import write_results

    p = argparse.ArgumentParser(description="why LLaVA's stage 1 does not align (S34)")
    p.add_argument("--out", default="results/llava_stage1_diagnosis.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reader", action="store_true", help="reader_trial instead of the diagnosis")
    p.add_argument("--lm-steps", type=int, default=2000, help="the reader GPT's pretraining steps (--reader)")
    p.add_argument("--stage1-steps", type=int, nargs="+", default=[200],
                   help="stage-1 lengths to try, each from the same fresh projector (--reader)")
    args = p.parse_args()
    load = os.getloadavg()
    if args.reader:
        r = reader_trial(args.seed, args.lm_steps, args.stage1_steps)
        r["command"] = (f"python -m minivl.recipes.llava_stage1 --reader --seed {args.seed} --lm-steps "
                        f"{args.lm_steps} --stage1-steps {' '.join(map(str, args.stage1_steps))} --out {args.out}")
    else:
        r = diagnose(args.seed)
        r["command"] = f"python -m minivl.recipes.llava_stage1 --seed {args.seed} --out {args.out}"
    r["note"] = "wall times inflated: 2 cores shared with 3 other developers' jobs; 1 BLAS thread"
    r["load_average_at_start"] = [round(x, 2) for x in load]
    r["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"results: {write_results(args.out, 'python -m minivl.recipes.llava_stage1', vars(args), r)}")


__all__ = ["fixed_caption", "reading_order", "table_features", "identity_features", "template_costs",
           "free_prefix", "words_in_prompt", "reads_words", "reader_trial", "projector_fit", "diagnose"]
