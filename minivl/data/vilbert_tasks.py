"""The six ViLBERT transfer tasks as model-ready arrays (lecture S10; Lu et al. 2019).

Each task generator of the shapes world (``vqa``, ``refexp``, ``retrieval``,
``multiple_choice``, ``nlvr``, ``foil``) becomes a ``TaskSplit``: token ids
and masks, which image each pass reads, and the targets of the task's head.
An item is answered in ``P`` passes through the model, one (text, image) pair
each, so every task has the same layout:

======== ===== ================================================ =======================
task     P     the passes                                        targets
======== ===== ================================================ =======================
vqa      1     question, image                                   soft scores (A,), answer
refexp   1     expression, image                                 IoU per region token
retrieval 4    the true pair, another caption, another image,    label (which pass is true)
               a hard-negative caption (ViLBERT's four)
vcr      8     4 x (question [SEP] answer), then 4 x              answer / rationale label
               (question answer [SEP] rationale), one image
nlvr     2     statement with the left image, with the right     true / false
foil     1     caption (true or foiled), image                   foiled?, the foiled token
======== ===== ================================================ =======================

Texts are BERT's ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` in the ids of
the tokenizer the text stream was pretrained with (the caption corpus's BPE,
``minivl.data.corpus``); each word is encoded on its own (with its leading
space), so a FOIL word position maps to the token that starts the word.

Splits are by scene (``splits.py``): a task's train, val and test items come
from disjoint scene pools (NLVR pairs from within one pool). Regions come from
the part's scenes through a region encoder (``minivl.data.regions``:
``encode(images, scenes) -> RegionBatch``), computed once per scene and
indexed by each pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minivl.data.boxes import box_iou
from minivl.data.captions import sample_caption
from minivl.data.foil import foil_items
from minivl.data.language import split_words
from minivl.data.loader import pad_sequences
from minivl.data.multiple_choice import multiple_choice_items
from minivl.data.nlvr import nlvr_items
from minivl.data.refexp import refexp_items
from minivl.data.render import render
from minivl.data.retrieval import describes, four_way
from minivl.data.splits import IID_PARTS
from minivl.data.vqa import ANSWERS, vqa_items

TASKS = ("vqa", "refexp", "retrieval", "vcr", "nlvr", "foil")
PASSES = {"vqa": 1, "refexp": 1, "retrieval": 4, "vcr": 8, "nlvr": 2, "foil": 1}
# targets that are finer groups, scored per value besides ``groups`` (``vilbert_transfer.evaluate``)
DETAILS = ("detail", "objects")
IOU_THRESHOLD = 0.5  # ViLBERT's refexp target: IoU with the true box, 0 below this


@dataclass
class TaskSplit:
    """One part (train / val / test) of one task; ``N`` items of ``P`` passes each.

    ``ids, text_mask``: ``(N, P, T)``; ``images``: ``(N, P)`` index into
    ``regions`` (one row per scene of ``scenes``); ``targets``: arrays with N
    rows; ``groups``: ``(N,)`` the question type / form / kind of each item.
    """

    task: str
    part: str
    ids: np.ndarray
    text_mask: np.ndarray
    images: np.ndarray
    targets: dict[str, np.ndarray]
    groups: np.ndarray
    regions: object  # a RegionBatch over ``scenes``: feats (S, 1+R, D), locs, mask, boxes
    scenes: list = field(repr=False, default_factory=list)
    texts: list = field(repr=False, default_factory=list)  # (N, P) the passes' texts

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def passes(self) -> int:
        return self.ids.shape[1]


def encode_text(tokenizer, first: str, second: str | None = None) -> tuple[list[int], list[int]]:
    """``[CLS] first [SEP] (second [SEP])`` as ids, and the index of each word's first token
    (words of ``split_words(first)``; the FOIL position counts in those)."""
    special = tokenizer.special_tokens
    ids, starts = [special["[CLS]"]], []
    for k, word in enumerate(split_words(first)):
        starts.append(len(ids))
        ids += tokenizer.encode(word if k == 0 or not word[0].isalnum() else " " + word)
    ids.append(special["[SEP]"])
    if second is not None:
        for k, word in enumerate(split_words(second)):
            ids += tokenizer.encode(word if k == 0 or not word[0].isalnum() else " " + word)
        ids.append(special["[SEP]"])
    return ids, starts


def _pad(rows: list[list[list[int]]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ``N x P`` token lists -> ``ids, mask (N, P, T)``."""
    n, p = len(rows), len(rows[0])
    ids, mask = pad_sequences([seq for row in rows for seq in row], pad_id)  # (N * P, T)
    return ids.reshape(n, p, -1), mask.reshape(n, p, -1)


def region_batch(scenes, encoder, jitter: float = 0.0, rng=None):
    """The regions of every scene through ``encoder`` (``encode(images, scenes, ...)``)."""
    from minivl.models.vision import preprocess

    return encoder.encode(preprocess(render(scenes)), scenes, jitter=jitter, rng=rng)


def refexp_targets(region_boxes: np.ndarray, region_mask: np.ndarray, box) -> np.ndarray:
    """Per region token ``(1+R,)``: IoU of its box with ``box``, 0 below 0.5, 0 for [IMG] and
    padding (``region_boxes (R, 4)``, ``region_mask (1+R,)``)."""
    iou = box_iou(region_boxes, np.asarray(box)[None])[:, 0]  # (R,)
    iou = np.where((iou >= IOU_THRESHOLD) & region_mask[1:], iou, 0.0)
    return np.concatenate([[0.0], iou]).astype(np.float32)


# ---------------------------------------------------------------- one builder per task


def _vqa(scenes, rng, tok):
    items = vqa_items(scenes, rng)
    texts = [[it.question] for it in items]
    targets = {"scores": np.stack([it.scores for it in items]),
               "answer": np.array([it.answer_id for it in items])}
    return texts, [[encode_text(tok, it.question)[0]] for it in items], \
        [[it.scene_index] for it in items], targets, [it.qtype for it in items]


def _refexp(scenes, rng, tok):
    items = refexp_items(scenes, rng)
    targets = {"box": np.array([it.box for it in items]), "target": np.array([it.target for it in items])}
    return [[it.text] for it in items], [[encode_text(tok, it.text)[0]] for it in items], \
        [[it.scene_index] for it in items], targets, [it.form for it in items]


def _retrieval(scenes, rng, tok):
    items = four_way(scenes, rng)
    texts = [list(it.captions) for it in items]
    ids = [[encode_text(tok, c)[0] for c in it.captions] for it in items]
    return texts, ids, [list(it.image_indices) for it in items], \
        {"label": np.array([it.label for it in items])}, ["four_way"] * len(items)


def _vcr(scenes, rng, tok):
    items = multiple_choice_items(scenes, rng)
    texts, ids = [], []
    for it in items:
        right = it.answers[it.answer_label]
        pairs = [(it.question, a) for a in it.answers] + [(f"{it.question} {right}", r) for r in it.rationales]
        texts.append([f"{a} [SEP] {b}" for a, b in pairs])
        ids.append([encode_text(tok, a, b)[0] for a, b in pairs])
    targets = {"answer": np.array([it.answer_label for it in items]),
               "rationale": np.array([it.rationale_label for it in items]),
               # finer groups for the scores (``DETAILS``): what a count question counts by, and
               # how many objects the scene has
               "detail": np.array([it.detail for it in items]),
               "objects": np.array([len(scenes[it.scene_index]) for it in items])}
    return texts, ids, [[it.scene_index] * 8 for it in items], targets, [it.kind for it in items]


def _nlvr(scenes, rng, tok):
    items = nlvr_items(scenes, len(scenes), rng)
    ids = [[encode_text(tok, it.statement)[0]] * 2 for it in items]
    return [[it.statement] * 2 for it in items], ids, [[it.left, it.right] for it in items], \
        {"label": np.array([int(it.label) for it in items])}, [it.kind for it in items]


def _foil(scenes, rng, tok):
    """Each item twice: its true caption (label 0, no word) and its foil (label 1, the word)."""
    texts, ids, images, labels, words, groups = [], [], [], [], [], []
    for it in foil_items(scenes, rng):
        for caption, foiled in ((it.original, 0), (it.caption, 1)):
            tokens, starts = encode_text(tok, caption)
            texts.append([caption])
            ids.append([tokens])
            images.append([it.scene_index])
            labels.append(foiled)
            words.append(starts[it.position] if foiled else -1)
            groups.append(it.kind)
    order = rng.permutation(len(ids))  # a true caption and its foil are not neighbours
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return pick(texts), pick(ids), pick(images), \
        {"label": np.array(labels)[order], "word": np.array(words)[order]}, pick(groups)


_BUILDERS = {"vqa": _vqa, "refexp": _refexp, "retrieval": _retrieval, "vcr": _vcr, "nlvr": _nlvr,
             "foil": _foil}


def build_split(task: str, scenes, part: str, tokenizer, regions, rng: np.random.Generator,
                max_len: int | None = None) -> TaskSplit:
    """``task``'s items over ``scenes`` (all of one part) with their ``regions`` (a RegionBatch
    over the same scenes, in order). ``max_len``: items with a longer pass are left out (the
    text stream's position table ends there)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if part not in IID_PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {IID_PARTS}")
    if len(regions.feats) != len(scenes):
        raise ValueError(f"regions.feats {regions.feats.shape} must have one row per scene ({len(scenes)})")
    texts, ids, images, targets, groups = _BUILDERS[task](scenes, rng, tokenizer)
    if max_len is not None:
        keep = [k for k, row in enumerate(ids) if max(len(seq) for seq in row) <= max_len]
        texts, ids, images, groups = ([xs[k] for k in keep] for xs in (texts, ids, images, groups))
        targets = {name: value[keep] for name, value in targets.items()}
    if not ids:
        raise ValueError(f"{task}: no items could be made from {len(scenes)} {part} scenes")
    ids, mask = _pad(ids, tokenizer.special_tokens["[PAD]"])
    images = np.asarray(images, dtype=np.int64)  # (N, P)
    if task == "refexp":
        targets["iou"] = np.stack([refexp_targets(regions.boxes[i], regions.mask[i], box)
                                   for i, box in zip(images[:, 0], targets["box"])])  # (N, 1+R)
    if task == "vqa":
        assert targets["scores"].shape[1] == len(ANSWERS)
    return TaskSplit(task, part, ids, mask, images, targets, np.asarray(groups), regions, scenes, texts)


def make_task(task: str, world, tokenizer, encoder, sizes=(2000, 300, 1000), seed: int = 0,
              key: str = "scene", jitter: float = 0.0, max_len: int | None = None,
              parts: dict | None = None) -> dict[str, TaskSplit]:
    """Train / val / test ``TaskSplit``s of ``task`` from ``sizes`` scenes of each i.i.d. part of
    ``world`` (a ``ShapesWorld``), regions from ``encoder``. ``key``: how parts are kept apart
    (``splits.py``; "scene", the default, as the blind baselines are measured). ``parts``: the
    ``scene_parts`` to use (so several tasks share one pass of the detector)."""
    parts = parts or scene_parts(world, encoder, sizes, seed, key, jitter)
    return {part: build_split(task, scenes, part, tokenizer, regions, np.random.default_rng([seed, k, 3]), max_len)
            for k, (part, (scenes, regions)) in enumerate(parts.items())}


def scene_parts(world, encoder, sizes=(2000, 300, 1000), seed: int = 0, key: str = "scene",
                jitter: float = 0.0) -> dict[str, tuple]:
    """``{part: (scenes, regions)}``: ``sizes`` scenes of each i.i.d. part and their regions."""
    out = {}
    for k, (part, n) in enumerate(zip(IID_PARTS, sizes)):
        scenes = world.iid_scenes(n, part, rng=np.random.default_rng([seed, k, 1]), key=key)
        out[part] = scenes, region_batch(scenes, encoder, jitter=jitter, rng=np.random.default_rng([seed, k, 2]))
    return out


def gather(split: TaskSplit, index) -> dict:
    """Rows ``index`` of a split as one flat batch of ``B * P`` passes, text trimmed to the
    longest: ``ids, text_mask (B*P, T)``, ``feats (B*P, 1+R, D)``, ``locs (B*P, 1+R, 5)``,
    ``region_mask (B*P, 1+R)``, and the targets (``B`` rows each) and groups."""
    index = np.asarray(index)
    ids, mask = split.ids[index], split.text_mask[index]  # (B, P, T)
    t = max(int(mask.sum(-1).max()), 1)
    scenes = split.images[index].reshape(-1)  # (B*P,)
    r = split.regions
    return {
        "ids": ids[..., :t].reshape(-1, t), "text_mask": mask[..., :t].reshape(-1, t),
        "feats": r.feats[scenes], "locs": r.locs[scenes], "region_mask": r.mask[scenes],
        "passes": split.passes, "groups": split.groups[index],
        **{name: value[index] for name, value in split.targets.items()},
    }


def retrieval_queries(scenes, rng: np.random.Generator):
    """A describing list caption per scene, for recall@1 among the scenes: ``(texts, captions)``;
    image ``j`` answers query ``i`` when ``j == i`` or ``describes(captions[i], scenes[j])``."""
    captions = [sample_caption(s, rng, kinds=("list",)) for s in scenes]
    return [c.text for c in captions], captions


def answers_query(caption, scene) -> bool:
    """Whether a retrieved scene is right for a query caption (it lists that scene's objects)."""
    return describes(caption, scene)
