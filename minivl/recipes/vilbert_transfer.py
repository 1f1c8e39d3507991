"""ViLBERT's transfer tasks: one head and one loss per task, fine-tuned on any two-input
encoder (lecture S10; Lu et al. 2019, section 4 and FIDELITY's fine-tuning heads).

Entry points (``minivl vilbert finetune`` calls ``finetune``):

    finetune(task, encoder, data, steps=300, batch_size=32, lr=1e-3, seed=0,
             eval_every=0, progress=True, desc=None) -> {"model", "history", "metrics"}
        task: one of TASKS; encoder: any model with
        ``encode(ids, text_mask, feats, locs, region_mask)`` (ViLBERT and the baselines of
        ``minivl.models.vilbert``); data: ``{"train", "val", "test"}`` of
        ``minivl.data.vilbert_tasks.TaskSplit`` (``make_task``). ``metrics``: the val and
        test scores of ``evaluate`` and the training time.
    evaluate(task, model, split, batch_size=64) -> dict   (``model``: a ``TransferModel``)
    retrieval_recall_at_1(model, scenes, regions, tokenizer, n_queries, rng) -> dict

The heads read the encoder's outputs: the hidden states of the text stream
``(B, T, Dt)`` and of the visual stream ``(B, 1+R, Dv)``, and the fused pooled
vector ``pooled_text * pooled_image (B, Dp)``:

========= ====================================== ================================
task      head                                   loss / metric
========= ====================================== ================================
vqa       MLP on the fused vector -> answers     BCE on soft scores / VQA accuracy
refexp    Linear(1) per region token             BCE on IoU (0 below 0.5) / top IoU >= 0.5
retrieval Linear(1) per (caption, image) pass    softmax over 4 / 4-way accuracy, R@1
vcr       Linear(1) per option (Q->A, QA->R)     softmax over 4 each / Q->A, QA->R, Q->AR
nlvr      MLP on both images' fused vectors      true / false cross-entropy
foil      Linear(2) on fused + Linear(1) / token correct-or-foiled, which word
          (``foil_head="token"``: Linear(1) / token, one softmax over [CLS] = correct
          and the words)
========= ====================================== ================================

Why FOIL has a token head: the fused vector is made from token 0 of each stream, and
a size or relation swap can only be seen by comparing one word with its object's
region, which the last co-attention layer does at that word; in the placement before
2026-12-05 (``co_attention_at = ((1, 0), (2, 1))``; the default now ends on a text block)
no text self-attention followed it, so [CLS] never read the comparison. On size foils alone
the pretrained ViLBERT (that placement) with the fused Linear(2) stays at 50% on its own
training items, with the token head it fits them (``minivl/recipes/vilbert_foil_probe.py``,
``lectures/08-vilbert.md``).

VCR trains one model on both sub-tasks at once (two Linear(1) heads; the
paper trains them apart); Q->AR counts an item right when both its answer and
its rationale (chosen given the right answer) are right. The table of
encoders is ``minivl/recipes/vilbert_table.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.data.vilbert_tasks import DETAILS, PASSES, TASKS, TaskSplit, answers_query, encode_text, gather
from minivl.data.vqa import ANSWERS
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import no_grad
from minivl.train import run_eval, train

N_ANSWERS = len(ANSWERS)
NEG = -1e9  # a logit that softmax turns into 0
# FOIL's correct-or-foiled head: "linear" / "mlp" on the fused vector (with a separate Linear(1)
# per token for the word), or "token": one softmax over [CLS] (the caption is correct) and the
# caption's tokens (this one is the foiled word), scored by one Linear(1) on the text stream.
# The default is "token": on the table's data it fits size foils that the fused heads cannot
# (results/vilbert_foil_probe_mask15.json) and scores FOIL higher for ViLBERT in both seeds
# (results/vilbert_transfer_2000scenes.json; "linear", the earlier default, in vilbert_transfer_foil_linear.json).
# "regions" (not in the paper; issue 12's relation swaps): the token head, with [CLS]'s "correct"
# score plus the log-sum-exp over the real region tokens of a Linear(1) on the visual stream
# ("some region fits the caption"), the way referring expressions read relations at the regions.
FOIL_HEADS = ("linear", "mlp", "token", "regions")
FOIL_HEAD = "token"


# ---------------------------------------------------------------- reading an encoder


def encoder_outputs(encoder, batch: dict):
    """``(text (B, T, Dt), visual (B, 1+R, Dv), fused (B, Dp))`` of a flat batch.

    ``encoder.encode`` returns ``minivl.models.vilbert.Streams``: ``text``,
    ``visual`` (hidden states) and ``pooled_text``, ``pooled_image``; the fused
    vector is their element-wise product (ViLBERT's alignment and VQA input, S09-S10).
    """
    out = encoder.encode(batch["ids"], batch["text_mask"], batch["feats"], batch["locs"],
                         batch["region_mask"])
    return out.text, out.visual, out.pooled_text * out.pooled_image


def pass_subset(batch: dict, passes: int, start: int, stop: int) -> dict:
    """The passes ``start:stop`` of every item of a flat batch of ``B * passes`` passes, as a
    flat batch of ``B * (stop - start)`` passes, the text trimmed to their own longest.

    VCR's answer passes (question [SEP] answer) are about half as long as its rationale
    passes (question answer [SEP] rationale); read in one batch they were padded to the
    rationales' length. Padding is masked, so the scores are the same either way
    (``tests/recipes/test_vilbert_transfer.py``), at a fraction of the text tokens."""
    def part(a):
        a = np.asarray(a) if not hasattr(a, "numpy") else a
        return a.reshape(-1, passes, *a.shape[1:])[:, start:stop].reshape(-1, *a.shape[1:])

    mask = part(batch["text_mask"])
    t = max(int(np.asarray(mask).sum(-1).max()), 1)
    return {"ids": part(batch["ids"])[:, :t], "text_mask": mask[:, :t], "feats": part(batch["feats"]),
            "locs": part(batch["locs"]), "region_mask": part(batch["region_mask"])}


# ---------------------------------------------------------------- losses (one per head)


def vqa_loss(logits, scores):
    """BCE of answer logits ``(B, A)`` against soft scores, summed over answers, averaged
    over questions (ViLBERT's multi-label VQA loss)."""
    return F.binary_cross_entropy_with_logits(logits, scores) * logits.shape[1]


def refexp_loss(logits, iou, region_mask):
    """BCE of each real region's logit ``(B, 1+R)`` against its IoU target; [IMG] (token 0) and
    padding are left out; the average over the regions scored."""
    scored = np.asarray(region_mask, dtype=bool).copy()
    scored[:, 0] = False
    per = F.binary_cross_entropy_with_logits(logits, iou, reduction="none")  # (B, 1+R)
    return (per * scored.astype(np.float32)).sum() / max(int(scored.sum()), 1)


def choice_loss(logits, labels):
    """Softmax cross-entropy over the options ``(B, C)``: retrieval's 4, VCR's 4, NLVR's 2."""
    return F.cross_entropy(logits, np.asarray(labels))


def token_foil_loss(cls_logit, word_logits, label, word):
    """FOIL's token head: cross-entropy of one softmax over position 0 ([CLS]: the caption is
    correct) and the word positions ``(B, T)`` (padding already at ``NEG``); the target is 0
    for a correct caption and the foiled word's position for a foiled one.
    ``cls_logit (B, 1)``; ``word_logits (B, T)``, their column 0 ([CLS] as a word) unused."""
    logits = F.concat([cls_logit, word_logits[:, 1:]], axis=1)  # (B, T): [CLS], then words 1..T-1
    return F.cross_entropy(logits, np.where(np.asarray(label) == 1, np.asarray(word), 0))


def foil_loss(detect_logits, word_logits, label, word, text_mask):
    """Correct-or-foiled cross-entropy ``(B, 2)`` plus, on foiled captions, the
    cross-entropy of the foiled word over the caption's real tokens ``(B, T)``."""
    loss = F.cross_entropy(detect_logits, np.asarray(label))
    foiled = np.asarray(label) == 1
    if foiled.any():
        masked = F.masked_fill(word_logits, ~np.asarray(text_mask, dtype=bool), NEG)
        target = np.where(foiled, np.asarray(word), -100)  # -100: ignored
        loss = loss + F.cross_entropy(masked, target)
    return loss


# ---------------------------------------------------------------- heads


class VQAHead(nn.Module):
    """Linear -> GELU -> LayerNorm -> Linear over the answer vocabulary (ViLBERT's VQA MLP)."""

    def __init__(self, dim, n_answers=N_ANSWERS):
        super().__init__()
        self.fc1, self.ln, self.fc2 = nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.Linear(2 * dim, n_answers)

    def forward(self, fused):
        return self.fc2(self.ln(F.gelu(self.fc1(fused))))  # (B, A)


class TransferModel(nn.Module):
    """An encoder and the head of one task; ``forward(batch)`` -> the task's logits:
    vqa ``(B, A)``, refexp ``(B, 1+R)``, retrieval ``(B, 4)``, vcr ``(B, 8)`` (answers then
    rationales), nlvr ``(B, 2)``, foil ``(B, 2 + T)`` (detection, then one per token; with
    ``foil_head="token"`` the detection pair is [CLS]'s score and the log-sum-exp of the words',
    the softmax over both being the softmax over [CLS] and the words)."""

    def __init__(self, task: str, encoder, dims: tuple[int, int, int], foil_head: str = FOIL_HEAD):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        if foil_head not in FOIL_HEADS:
            raise ValueError(f"foil_head must be one of {FOIL_HEADS}, got {foil_head!r}")
        self.task, self.encoder = task, encoder
        dt, dv, dp = dims
        if task == "vqa":
            self.head = VQAHead(dp)
        elif task == "refexp":
            self.head = nn.Linear(dv, 1)
        elif task in ("retrieval", "vcr"):
            self.head = nn.Linear(dp, 1)
            if task == "vcr":
                self.rationale_head = nn.Linear(dp, 1)
        elif task == "nlvr":
            self.head = nn.MLP(2 * dp, 2 * dp, 2, activation="gelu")
        else:  # FOIL: Linear(2) like pretraining's alignment head, an MLP like NLVR's, or none
            if foil_head in ("linear", "mlp"):
                self.head = nn.Linear(dp, 2) if foil_head == "linear" else nn.MLP(dp, 2 * dp, 2, activation="gelu")
            if foil_head == "regions":
                self.region_head = nn.Linear(dv, 1)
            self.word_head = nn.Linear(dt, 1)
        self.foil_head = foil_head if task == "foil" else None

    def forward(self, batch: dict):
        p = PASSES[self.task]
        if self.task == "vcr":  # answers and rationales apart, each padded to its own longest text
            answers = self.head(encoder_outputs(self.encoder, pass_subset(batch, p, 0, 4))[2]).reshape(-1, 4)
            rationales = self.rationale_head(encoder_outputs(self.encoder, pass_subset(batch, p, 4, 8))[2])
            return F.concat([answers, rationales.reshape(-1, 4)], axis=1)  # (B, 8)
        text, visual, fused = encoder_outputs(self.encoder, batch)
        if self.task == "vqa":
            return self.head(fused)
        if self.task == "refexp":
            return self.head(visual).squeeze(-1)  # (B, 1+R)
        if self.task == "retrieval":
            return self.head(fused).reshape(-1, p)  # (B, 4)
        if self.task == "nlvr":
            return self.head(fused.reshape(-1, 2 * fused.shape[-1]))  # (B, 2): [left, right]
        words = self.word_head(text).squeeze(-1)  # (B, T)
        if self.foil_head in ("linear", "mlp"):
            return F.concat([self.head(fused), words], axis=1)  # (B, 2 + T)
        correct = words[:, 0:1]  # (B, 1): [CLS]'s score is "the caption is correct"
        if self.foil_head == "regions":  # ... plus "some region fits the caption"
            regions = np.asarray(batch["region_mask"], dtype=bool).copy()
            regions[:, 0] = False  # not [IMG]
            fits = F.masked_fill(self.region_head(visual).squeeze(-1), ~regions, NEG)  # (B, 1+R)
            correct = correct + F.logsumexp(fits, axis=-1, keepdims=True)
        real = np.asarray(batch["text_mask"], dtype=bool).copy()
        real[:, 0] = False  # [CLS] is not a word
        words = F.masked_fill(words, ~real, NEG)
        foiled = F.logsumexp(words, axis=-1, keepdims=True)  # (B, 1): "some word is foiled"
        return F.concat([correct, foiled, words], axis=1)  # (B, 2 + T)


def probe_dims(encoder, split: TaskSplit) -> tuple[int, int, int]:
    """``(Dt, Dv, Dp)`` of an encoder, read off one pass of a split."""
    with no_grad():
        text, visual, fused = encoder_outputs(encoder, gather(split, [0]))
    return text.shape[-1], visual.shape[-1], fused.shape[-1]


def make_transfer_model(task, encoder, split: TaskSplit, foil_head: str = FOIL_HEAD) -> TransferModel:
    return TransferModel(task, encoder, probe_dims(encoder, split), foil_head)


def task_loss(model: TransferModel, batch: dict):
    """The loss of ``model.task`` on one gathered batch."""
    logits, task = model(batch), model.task
    if task == "vqa":
        return vqa_loss(logits, batch["scores"])
    if task == "refexp":
        return refexp_loss(logits, batch["iou"], batch["region_mask"])
    if task in ("retrieval", "nlvr"):
        return choice_loss(logits, batch["label"])
    if task == "vcr":
        return choice_loss(logits[:, :4], batch["answer"]) + choice_loss(logits[:, 4:], batch["rationale"])
    if model.foil_head in ("token", "regions"):
        return token_foil_loss(logits[:, :1], logits[:, 2:], batch["label"], batch["word"])
    return foil_loss(logits[:, :2], logits[:, 2:], batch["label"], batch["word"], batch["text_mask"])


# ---------------------------------------------------------------- metrics


def item_scores(task: str, logits: np.ndarray, batch: dict) -> dict[str, np.ndarray]:
    """Per-item scores (1 = right) of one batch's logits: the metrics before averaging."""
    if task == "vqa":  # VQA accuracy: the soft score of the answer picked
        return {"accuracy": batch["scores"][np.arange(len(logits)), logits.argmax(1)]}
    if task == "refexp":  # the top real region overlaps the true box by IoU >= 0.5
        real = np.asarray(batch["region_mask"], dtype=bool).copy()
        real[:, 0] = False
        top = np.where(real, logits, -np.inf).argmax(1)
        return {"accuracy": (batch["iou"][np.arange(len(logits)), top] > 0).astype(float)}
    if task in ("retrieval", "nlvr"):
        return {"accuracy": (logits.argmax(1) == batch["label"]).astype(float)}
    if task == "vcr":
        qa = logits[:, :4].argmax(1) == batch["answer"]
        qar = logits[:, 4:].argmax(1) == batch["rationale"]
        return {"q_a": qa.astype(float), "qa_r": qar.astype(float), "q_ar": (qa & qar).astype(float)}
    detect = logits[:, :2].argmax(1) == batch["label"]
    words = np.where(batch["text_mask"], logits[:, 2:], -np.inf).argmax(1)
    foiled = batch["label"] == 1
    return {"accuracy": detect.astype(float),
            "word": np.where(foiled, (words == batch["word"]).astype(float), np.nan)}


def summarise(scores: dict[str, np.ndarray], groups: np.ndarray) -> dict:
    """Means over items (NaN: not scored), overall and per group."""
    out = {}
    for name, values in scores.items():
        out[name] = float(np.nanmean(values))
        for g in sorted(set(groups.tolist())):
            chosen = values[groups == g]
            if np.isfinite(chosen).any():
                out[f"{name}/{g}"] = float(np.nanmean(chosen))
    out["n"] = int(len(groups))
    return out


def evaluate(task: str, model: TransferModel, split: TaskSplit, batch_size: int = 64) -> dict:
    """The task's metrics on every item of ``split`` (eval mode, no graph)."""
    def scores():
        collected: dict[str, list] = {}
        for start in range(0, len(split), batch_size):
            batch = gather(split, np.arange(start, min(start + batch_size, len(split))))
            for name, v in item_scores(task, model(batch).numpy(), batch).items():
                collected.setdefault(name, []).append(v)
        scores = {k: np.concatenate(v) for k, v in collected.items()}
        out = summarise(scores, split.groups)
        for key in DETAILS:  # finer groups (VCR: what a count counts by, objects in the scene)
            if key in split.targets:
                labels = np.array([f"{key}={g}" for g in split.targets[key]])
                finer = summarise(scores, labels)
                out |= {k: v for k, v in finer.items() if "/" in k}
                out |= {f"n/{g}": int((labels == g).sum()) for g in sorted(set(labels.tolist()))}
        return out

    return run_eval(model, scores)


def retrieval_recall_at_1(model: TransferModel, scenes, regions, tokenizer, n_queries: int,
                          rng: np.random.Generator, batch_size: int = 250) -> dict:
    """Recall@1 of caption -> image retrieval among all ``len(scenes)`` images: each of
    ``n_queries`` captions (one per scene, list captions that name every object) is scored
    with every image by the retrieval head; a hit when the top image is the caption's own or
    one the caption describes as well (``vilbert_tasks.answers_query``)."""
    from minivl.data.captions import sample_caption

    if model.task != "retrieval":
        raise ValueError(f"recall@1 needs the retrieval head, got a {model.task!r} model")
    n_queries = min(n_queries, len(scenes))
    queries = rng.choice(len(scenes), n_queries, replace=False)
    hits = []

    def run():
        for q in queries:
            caption = sample_caption(scenes[q], rng, kinds=("list",))
            ids = np.asarray(encode_text(tokenizer, caption.text)[0])
            scores = []
            for start in range(0, len(scenes), batch_size):
                index = np.arange(start, min(start + batch_size, len(scenes)))
                batch = {"ids": np.tile(ids, (len(index), 1)), "text_mask": np.ones((len(index), len(ids)), bool),
                         "feats": regions.feats[index], "locs": regions.locs[index],
                         "region_mask": regions.mask[index]}
                _, _, fused = encoder_outputs(model.encoder, batch)
                scores.append(model.head(fused).numpy()[:, 0])
            top = int(np.concatenate(scores).argmax())
            hits.append(top == q or answers_query(caption, scenes[top]))
        return {"recall@1": float(np.mean(hits)), "queries": int(n_queries), "candidates": len(scenes)}

    return run_eval(model, run)


# ---------------------------------------------------------------- fine-tuning


def batches(split: TaskSplit, batch_size: int, seed: int):
    """Shuffled batches of a split forever, a fresh order each epoch."""
    rng = np.random.default_rng(seed)
    size = min(batch_size, len(split))
    while True:
        order = rng.permutation(len(split))
        for start in range(0, len(order) - size + 1, size):
            yield gather(split, order[start:start + size])


def first_items(split: TaskSplit, n: int) -> TaskSplit:
    """The first ``n`` items of a split (the same regions, scenes and texts)."""
    return replace(split, ids=split.ids[:n], text_mask=split.text_mask[:n], images=split.images[:n],
                   targets={k: v[:n] for k, v in split.targets.items()}, groups=split.groups[:n],
                   texts=split.texts[:n])


def freeze_text_stream(encoder):
    """Freeze the text embeddings, the text blocks (the encoder's ``text_stack``; SingleStream's
    one stack is shared with the regions) and the masked-word head (tied to the word embeddings,
    unused in fine-tuning) of a two-stream encoder; returns it."""
    encoder.text_embeddings.requires_grad_(False)
    getattr(encoder, encoder.text_stack).requires_grad_(False)
    encoder.mlm.requires_grad_(False)
    return encoder


def finetune(task: str, encoder, data: dict, steps: int = 300, batch_size: int = 32, lr: float = 1e-3,
             head_lr: float | None = None, warmup: int = 30, seed: int = 0, eval_every: int = 0,
             progress: bool = True, desc: str | None = None, train_scores: int = 0,
             foil_head: str = FOIL_HEAD, freeze_text: bool = False) -> dict:
    """Fine-tune ``encoder`` with ``task``'s head on ``data["train"]``; scores on val and test
    (and, with ``train_scores`` > 0, on that many training items: under- or over-fitting).
    ``foil_head``: FOIL's detection head, one of ``FOIL_HEADS`` (default ``FOIL_HEAD``).
    ``freeze_text``: the text stream's embeddings and blocks (``freeze_text_stream``) stay as
    they are; co-attention, the visual stream, the poolers and the head train.

    ``lr`` for the encoder, ``head_lr`` (default ``lr``) for the new head; AdamW with
    warm-up and cosine decay. Returns ``{"model", "history", "metrics"}``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    for part in ("train", "val", "test"):
        if part not in data or data[part].task != task:
            raise ValueError(f"data must hold {task!r} splits 'train', 'val', 'test'; got {sorted(data)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    limit = getattr(getattr(encoder, "config", None), "max_len", None)
    longest = max(data[part].ids.shape[-1] for part in ("train", "val", "test"))
    if limit is not None and longest > limit:
        raise ValueError(f"{task}: texts of {longest} tokens exceed the encoder's max_len={limit}")
    manual_seed(seed)
    if freeze_text:
        freeze_text_stream(encoder)
    model = make_transfer_model(task, encoder, data["train"], foil_head)
    head = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    body = [p for name, p in model.named_parameters() if name.startswith("encoder.")]
    optimizer = AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr or lr}], lr=lr)
    scheduler = WarmupCosineLR(optimizer, steps, min(warmup, steps), min_lr=[lr / 10, (head_lr or lr) / 10])
    history = train(model, task_loss, batches(data["train"], batch_size, seed), optimizer, steps, scheduler,
                    evaluate=(lambda: evaluate(task, model, data["val"])) if eval_every else None,
                    eval_every=eval_every, progress=progress, desc=desc or f"finetune {task}")
    begin = time.perf_counter()
    metrics = {"val": evaluate(task, model, data["val"]), "test": evaluate(task, model, data["test"]),
               "train_seconds": history.seconds, "steps": steps, "batch_size": batch_size,
               "train_items": len(data["train"])}
    if train_scores:
        metrics["train"] = evaluate(task, model, first_items(data["train"], train_scores))
    metrics["eval_seconds"] = time.perf_counter() - begin
    return {"model": model, "history": history, "metrics": metrics}


def chance(task: str, split: TaskSplit) -> float:
    """What a reader without the image scores on average: one over the options (VQA: one over
    the answers its question type allows; refexp: one over the regions)."""
    if task == "vqa":
        from minivl.data.blind import _answer_set_size

        n_counts = max(len(s) for s in split.scenes) + 1
        return float(np.mean([1 / _answer_set_size(ANSWERS[a], n_counts) for a in split.targets["answer"]]))
    if task == "refexp":
        return float(np.mean([1 / len(split.scenes[i]) for i in split.images[:, 0]]))
    return {"retrieval": 0.25, "vcr": 1 / 16, "nlvr": 0.5, "foil": 0.5}[task]


