"""Why LLaVA's exist, count and relation answers stay at the blind GPT's level
(lecture S36; a diagnosis of a trained model, not part of the recipe).

``minivl llava diagnose`` reads the checkpoints a study kept
(``minivl llava study --checkpoints DIR``) and measures, per question type:

* ``short_answers``: on held-out scenes and on the model's own training
  scenes, the accuracy of the greedy reply (as ``evaluate`` scores it), the
  share of replies in no teacher wording (``unparsed``), which answers it
  gives (``predicted``) against the true ones (``truth``), and a
  ``forced_choice`` accuracy: the answer whose teacher sentence the model
  finds most likely (no generation, so no wording can fail);
* the same with the image zeroed or shuffled between scenes: a type whose
  accuracy does not move does not use the image;
* ``scales``: the norm of the projected patches against that of the word
  and position embeddings they sit among;
* ``answer_balance_by_form``: how often the commonest answer is right for
  each question form (which attributes the question names), the prior a
  blind model can reach;
* ``single_type_fit``: from the stage-1 checkpoint, stage 2 on one question
  type alone (one round per item): can the model learn it at all, with the
  eye's features or with ``oracle_features`` (each cell's true attributes,
  one-hot)?
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np

from minivl.data.instructions import Instruction, _answer_sentence, _sentence
from minivl.data.language import NUMBER_WORDS
from minivl.data.llava_eval import EVAL_TYPES, short_answer
from minivl.data.llava_format import PAD, format_conversation, pad_batch
from minivl.data.shapes import COLOURS, SHAPES, SIZES
from minivl.data.vqa import _ANSWER_SETS, ask
from minivl.tensor import no_grad


def form(question) -> str:
    """Which attributes a question's subject names: "shape", "colour+shape", "size+colour+shape", ..."""
    s = question.subject
    return "+".join(f for f, v in (("size", s.size), ("colour", s.colour), ("shape", s.shape)) if v is not None)


def options(question, max_objects=3) -> tuple[str, ...]:
    """Every answer the question could have (counts up to ``max_objects``)."""
    return NUMBER_WORDS[: max_objects + 1] if question.qtype == "count" else _ANSWER_SETS[question.qtype]


def draw_questions(scenes, n_per_type, rng) -> list[tuple[int, object]]:
    """``n_per_type`` questions of every type of ``EVAL_TYPES`` on random scenes (as ``evaluate``)."""
    out = []
    for qtype in EVAL_TYPES:
        got = 0
        while got < n_per_type:
            i = int(rng.integers(len(scenes)))
            q = ask(scenes[i], qtype, rng)
            if q is not None:
                out.append((i, q))
                got += 1
    return out


def _prompt_text(question) -> str:
    return question.text[0].upper() + question.text[1:]


def forced_choice(model, tokenizer, question, features) -> str:
    """The option whose teacher sentence has the highest log-likelihood given the image ``(N, Dv)``."""
    opts = options(question)
    n, where = model.config.num_image_tokens, model.config.image_position
    turns = [[(_prompt_text(question), _answer_sentence(replace(question, answer=o)))] for o in opts]
    formatted = [format_conversation(tokenizer, t, n, features is not None, image_position=where) for t in turns]
    ids, labels = pad_batch(formatted, tokenizer.special_tokens[PAD])
    feats = None if features is None else np.repeat(np.asarray(features)[None], len(opts), 0)
    was = model.training
    model.eval()
    try:
        with no_grad():
            logits = model.forward_features(feats, ids).numpy()[:, :-1].astype(np.float64)  # (K, T-1, V)
    finally:
        model.train(was)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    target = labels[:, 1:]
    mask = target != -100
    score = [logp[k][mask[k], target[k][mask[k]]].sum() for k in range(len(opts))]
    return opts[int(np.argmax(score))]


def short_answers(model, tokenizer, scenes, features, n_per_type=60, seed=0, forced=True) -> dict:
    """Per type: accuracy, forced-choice accuracy, unparsed share, answers given and true, by form."""
    from minivl.recipes.llava import _generate_all

    questions = draw_questions(scenes, n_per_type, np.random.default_rng([seed, 36]))
    n, where = model.config.num_image_tokens, model.config.image_position
    prompts = [format_conversation(tokenizer, [(_prompt_text(q), None)], n, True, image_position=where)
               for _, q in questions]
    replies = _generate_all(model, tokenizer, prompts, features[[i for i, _ in questions]], 24)
    out = {t: {"right": [], "forced": [], "unparsed": 0, "predicted": Counter(), "truth": Counter(),
               "by_form": defaultdict(list)} for t in EVAL_TYPES}
    for (i, q), reply in zip(questions, replies):
        got, r = short_answer(q, reply), out[q.qtype]
        r["right"].append(got == q.answer)
        r["unparsed"] += got is None
        r["predicted"][str(got)] += 1
        r["truth"][q.answer] += 1
        r["by_form"][q.relation if q.qtype == "relation" else form(q)].append(got == q.answer)
        if forced:
            r["forced"].append(forced_choice(model, tokenizer, q, features[i]) == q.answer)
    return {t: {"accuracy": float(np.mean(r["right"])),
                **({"forced_choice": float(np.mean(r["forced"]))} if forced else {}),
                "unparsed": r["unparsed"] / len(r["right"]), "predicted": dict(r["predicted"]),
                "truth": dict(r["truth"]),
                "accuracy_by_form": {f: float(np.mean(v)) for f, v in sorted(r["by_form"].items())}}
            for t, r in out.items()}


def answer_balance_by_form(scenes, n=3000, seed=0) -> dict:
    """Per type and question form: questions drawn, and how often the commonest answer is right."""
    rng = np.random.default_rng([seed, 38])
    answers = defaultdict(Counter)
    for k in range(n):
        for qtype in ("exist", "count", "relation"):
            q = ask(scenes[k % len(scenes)], qtype, rng)
            if q is not None:
                answers[(qtype, q.relation if qtype == "relation" else form(q))][q.answer] += 1
    out = defaultdict(dict)
    for (qtype, f), c in sorted(answers.items()):
        total = sum(c.values())
        out[qtype][f] = {"questions": total, "majority_answer": c.most_common(1)[0][0],
                         "majority_share": c.most_common(1)[0][1] / total}
    return dict(out)


def oracle_features(scenes, dim) -> np.ndarray:
    """``(n, 9, dim)``: each cell's true attributes one-hot (occupied, colour, shape, size), zeros elsewhere."""
    from minivl.recipes.llava_probe import cell_labels

    need = 1 + len(COLOURS) + len(SHAPES) + len(SIZES)
    if dim < need:
        raise ValueError(f"dim must be >= {need} to hold the one-hot attributes, got {dim}")
    labels = cell_labels(scenes)  # (n, 9, 4): occupied, colour, shape, size
    out = np.zeros(labels.shape[:2] + (dim,), np.float32)
    n, c = np.nonzero(labels[..., 0] == 1)
    out[n, c, 0] = 1.0
    for k, offset in ((1, 1), (2, 1 + len(COLOURS)), (3, 1 + len(COLOURS) + len(SHAPES))):
        out[n, c, offset + labels[n, c, k]] = 1.0
    return out


def single_type_items(scenes, qtype, per_scene=3, seed=0) -> list[Instruction]:
    """``per_scene`` one-round conversations of ``qtype`` per scene, in the teacher's words."""
    rng = np.random.default_rng([seed, 39])
    out = []
    for i, scene in enumerate(scenes):
        for _ in range(per_scene):
            q = ask(scene, qtype, rng)
            if q is not None:
                out.append(Instruction("conversation", ((_sentence(q.text), _answer_sentence(q)),), i))
    return out


def single_type_fit(stage1_model, data, qtype, steps=1500, oracle=False, seed=0, n_per_type=60,
                    progress=False) -> dict:
    """Stage 2 from ``stage1_model`` (a copy) on ``qtype`` questions alone; that type's accuracy on
    training and held-out scenes. ``oracle``: the eye's features replaced by ``oracle_features``
    and a new projector."""
    from minivl.models.llava import Projector
    from minivl.random import manual_seed
    from minivl.recipes.llava import train_stage

    model = copy.deepcopy(stage1_model)
    fit = copy.copy(data)
    fit.items, fit.balance_kinds = single_type_items(data.train_scenes, qtype, seed=seed), False
    if oracle:
        manual_seed(seed)
        c = model.config
        model.projector = Projector(c.projector, c.vision_dim, c.dim)
        fit.train_features = oracle_features(data.train_scenes, c.vision_dim)
        fit.test_features = oracle_features(data.test_scenes, c.vision_dim)
    history = train_stage(model, fit, 2, steps, batch_size=16, seed=seed, progress=progress,
                          desc=f"{qtype} alone")
    k = len(fit.test_scenes)
    score = lambda scenes, feats: short_answers(model, fit.tokenizer, scenes, feats, n_per_type, seed)[qtype]
    keep = ("accuracy", "forced_choice", "unparsed", "predicted", "truth")
    return {"items": len(fit.items), "steps": steps, "oracle": oracle,
            "loss_first": float(np.mean(history.loss[:20])), "loss_last": float(np.mean(history.loss[-20:])),
            "held_out": {k2: v for k2, v in score(fit.test_scenes, fit.test_features).items() if k2 in keep},
            "training": {k2: v for k2, v in score(fit.train_scenes[:k], fit.train_features[:k]).items()
                         if k2 in keep}}


def scales(model, features) -> dict:
    """Mean L2 norms: the projected patches ``(B, N, D)``, the word embeddings, the position embeddings."""
    from minivl.tensor import Tensor

    with no_grad():
        patches = model.projector(Tensor(np.asarray(features, np.float32))).numpy()
    emb = model.lm.transformer.embeddings
    norm = lambda a: float(np.linalg.norm(a, axis=-1).mean())
    return {"eye_features": norm(features), "projected_patches": norm(patches),
            "word_embeddings": norm(emb.token.weight.numpy()), "position_embeddings": norm(emb.position.weight.numpy())}


def diagnose(model, data, n_per_type=60, seed=0) -> dict:
    """Short answers of a trained model on held-out and training scenes, and without its image."""
    tok, k = data.tokenizer, len(data.test_scenes)
    zero = np.zeros_like(data.test_features)
    shuffled = data.test_features[np.random.default_rng([seed, 40]).permutation(k)]
    return {"scales": scales(model, data.test_features),
            "held_out": short_answers(model, tok, data.test_scenes, data.test_features, n_per_type, seed),
            "training": short_answers(model, tok, data.train_scenes[:k], data.train_features[:k], n_per_type,
                                      seed),
            "image_zeroed": short_answers(model, tok, data.test_scenes, zero, n_per_type, seed, forced=False),
            "image_shuffled": short_answers(model, tok, data.test_scenes, shuffled, n_per_type, seed,
                                            forced=False)}
