"""How ViLBERT is pretrained on captioned shapes-world scenes (lectures S07-S09).

Two tasks at once, on each batch of (regions, caption) pairs:

* masked multi-modal modelling (S08): 15% of the words chosen, 80/10/10
  ([MASK] / random / kept, BERT's ``mask_tokens``), size and relation words
  at 50% instead (``WORD_MASK_RATES``, not in the paper; ``word_mask_rates={}``
  is the paper's rule), predicted by the
  masked-word head with cross-entropy; 15% of the regions chosen, 90% of
  those with their feature zeroed (the location stays), and the masked
  region's predicted class distribution trained by KL(detector || predicted),
  averaged over the chosen regions;
* multi-modal alignment (S09): with probability 0.5 the caption is swapped
  for one of another scene (redrawn until it is false of this scene), and
  ``Linear(2)`` on ``pooled_text * pooled_image`` says which.

  Not in the paper, and off by default (``HARD_SHARE`` is 0; it did not help):
  a share ``hard_negatives`` of the swapped captions can be hard instead, the scene's own caption with one size or
  relation word changed so that it is false (FOIL's swap,
  ``minivl/data/foil.py::foil_candidates``; random negative when the caption
  has no such swap). A random caption of another scene nearly always differs
  in a colour or a shape, so with random negatives alone alignment never had
  to look at sizes or positions (FOIL's size and relation swaps stayed at
  chance after pretraining); with half the negatives hard they stay at chance
  still. ``hard_negatives=0`` is the paper's recipe.

Every pair is masked alike, but the masked terms are computed on the
matching pairs only: the words of another image's caption cannot be read
off these regions. Held-out alignment accuracy is measured twice, on the same
500 held-out scenes and the same random negatives (``ALIGNMENT_CONDITIONS``):
masked (``alignment_accuracy``), the pretraining condition, words and regions
masked as in training; and unmasked (``alignment_accuracy_clean``), the
alignment head as the paper uses it for zero-shot retrieval, on the full
caption and all regions. Neither is "the" alignment figure; both are reported.
The loss is the sum of the three terms; each term is recorded per step
(``History.terms``).

Captions are ``minivl/data/captions.py``'s, tokenized with the BPE tokenizer
of minivl's BERT (``default_bert``: ``train_bert``'s default recipe, cached
like the detector), whose weights initialise the text stream (S03). Region
tokens come from a ``regions(scenes, rng) -> RegionBatch`` function, by
default ``RegionEncoder.load_default()`` (the trained detector,
``minivl/data/regions.py``). Scenes are the i.i.d. "train" and "val" parts.

``pretrain_vilbert`` trains one model (any of ``MODELS``: the baselines
pretrain the same way) and reports held-out alignment, masked-word and
masked-region accuracy; ``minivl vilbert pretrain --seeds 0 1 --results
results/vilbert_pretrain.json`` writes them, with the loss curve of each term.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from minivl import functional as F
from minivl.checkpoint import load_checkpoint, save_checkpoint
from minivl.data.captions import holds, sample_caption
from minivl.data.foil import foil_candidates
from minivl.data.language import RELATION_WORDS, SIZE_WORDS
from minivl.data.loader import pad_sequences
from minivl.data.shapes import COLOURS, SHAPES
from minivl.data.world import ShapesWorld
from minivl.models.bert import BERT, IGNORE_INDEX, mask_tokens
from minivl.models.vilbert import MODELS, ViLBERTConfig, matched_config
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import no_grad
from minivl.tokenizers import BPETokenizer
from minivl.train import run_eval, train

NEVER_MASKED = ("[CLS]", "[SEP]", "[PAD]")
TERMS = ("masked_words", "masked_regions", "alignment")
# The pretraining loss: a weighted sum of the terms. The paper sums them with weight 1.
# Here the alignment term is weighted 5: summed alike, the masked-word and masked-region
# gradients (larger, noisier, and on the same text and co-attention weights) drown the
# alignment signal, whose loss stays flat near log 2 for hundreds of steps (held-out
# alignment 0.61 after 400 steps with weights 1/1/1, 0.75 with the alignment term alone,
# 0.76 with 1/1/5, which keeps the masked terms; lectures/08-vilbert.md).
TERM_WEIGHTS = {"masked_words": 1.0, "masked_regions": 1.0, "alignment": 5.0}
# What each held-out alignment accuracy measures (written beside the figures in every pretraining
# record): the same held-out pairs, 50% random negatives, read in two conditions.
ALIGNMENT_CONDITIONS = {
    "alignment_accuracy": "masked: the pretraining condition, 15% of the words (80/10/10) and 15% of the "
                          "regions (90% of those zeroed) masked as in training, every word kind at 15%",
    "alignment_accuracy_clean": "unmasked: the alignment head as the paper uses it for zero-shot retrieval, "
                                "on the full caption and all regions",
    "alignment_accuracy_hard": "unmasked, with hard negatives (one size or relation word swapped) wherever "
                               "the caption allows"}
# The kinds of one-word swap a hard alignment negative makes, and the default share of
# negatives that are hard (when the caption allows such a swap). The default is 0, the
# paper's random negatives: with 0.5 (results/vilbert_pretrain_hard.json, seed 0) held-out
# alignment fell from 0.892 to 0.856 and FOIL's size and relation swaps stayed at chance
# (results/vilbert_transfer_h0.json), so hard negatives stay an option (--hard-negatives).
HARD_KINDS = ("size", "relation")
HARD_SHARE = 0.0
# Words by kind, as captions write them (``minivl/data/language.py``; relation phrases by
# their deciding word: "to the left of" by "left"). Each is one token after a space.
_LINKING = {"to", "the", "of", "than"}
WORD_KINDS = {"size": [w for ws in SIZE_WORDS for w in ws],
              "relation": list(dict.fromkeys(w for phrases in RELATION_WORDS.values() for p in phrases
                                             for w in p.split() if w not in _LINKING)),
              "colour": list(COLOURS), "shape": list(SHAPES)}
# Masking rate per word kind in pretraining, for the kinds named here; every other word is
# chosen at BERT's 15% (S08; empty: the paper's rule for every word). Size and relation words
# are asked about at 0.5: at 15% the pretrained model predicted a masked size word as well from
# another scene's regions as from its own (results/vilbert_foil_probe_mask15.json), so FOIL's
# size swaps stayed near chance. At 0.5 (seeds 0 / 1) masked size words read the image (0.41 /
# 0.43 own against 0.31 / 0.28 other; results/vilbert_foil_probe_mask50_s{0,1}.json), FOIL
# 0.780 / 0.807 -> 0.816 / 0.826 (size swaps 0.62 / 0.70 -> 0.80 / 0.79), NLVR 0.710 / 0.636
# -> 0.665 / 0.723, held-out alignment 0.892 / 0.882 -> 0.852 / 0.896 (results/vilbert_pretrain.json,
# _seed1.json; lectures/08-vilbert.md, S08). Relation words stay blind at 0.5.
WORD_MASK_RATES: dict = {"size": 0.5, "relation": 0.5}
# Steps of the default pretraining. 3,000 until 2026-12-05 (on NumPy, 354-521 s at load ~3; held-out
# alignment still rising at the end). On numba (the same math; ``minivl --backend numba vilbert
# pretrain``, as the table pretrains) 6,000 steps take 424 / 485 s at load 1.4 / 1.5 and lift held-out
# alignment from 0.896 / 0.892 to 0.922 / 0.922 (0.942 / 0.944 unmasked), masked regions from 0.69-0.80
# to 0.86 / 0.87 (results/vilbert_pretrain_6000steps_s{0,1}.json; results/vilbert_alignment_errors.json
# for the 3,000-step checkpoints' figures).
PRETRAIN_STEPS = 6000


# --------------------------------------------------------------------------- text stream and tokenizer
def _cache() -> Path:
    from minivl.checkpoint import cache_dir

    return cache_dir()


def default_bert(progress: bool = False) -> tuple[BERT, BPETokenizer]:
    """minivl's pretrained BERT (``train_bert`` with its defaults) and its tokenizer,
    read from ``$MINIVL_CACHE`` (or ``~/.cache/minivl``), or trained (a couple of
    minutes on two cores) and cached there on first use."""
    from minivl.recipes.bert import train_bert

    settings = {"recipe": "train_bert defaults", "config": "dim 64, depth 2, 600 steps", "seed": 0}
    folder = _cache() / f"bert-{hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]}"
    if not (folder / "bert.safetensors").exists():
        result = train_bert(progress=progress, seed=0)
        folder.mkdir(parents=True, exist_ok=True)
        result["corpus"].tokenizer.save(folder / "tokenizer.json")
        save_checkpoint(result["model"], folder / "bert.safetensors", **result["metrics"])
    return load_checkpoint(BERT, folder / "bert.safetensors").eval(), BPETokenizer.load(folder / "tokenizer.json")


def default_regions():
    """``regions(scenes, rng)`` of the trained detector (``RegionEncoder.load_default``)."""
    from minivl.data.regions import RegionEncoder

    encoder = RegionEncoder.load_default()
    return lambda scenes, rng: encoder.encode_scenes(scenes, rng=rng)


# --------------------------------------------------------------------------- data
@dataclass
class CaptionedScenes:
    """Scenes, their region tokens (one RegionBatch row each) and true captions."""

    scenes: list
    regions: object  # a RegionBatch
    captions: list  # per scene: a list of Caption
    caption_ids: list  # per scene: the captions' token ids, [CLS] ... [SEP]

    def __len__(self):
        return len(self.scenes)


def caption_tokens(tokenizer: BPETokenizer, text: str) -> np.ndarray:
    """``[CLS] caption [SEP]`` as ids."""
    special = tokenizer.special_tokens
    return np.asarray([special["[CLS]"], *tokenizer.encode(text), special["[SEP]"]], dtype=np.int64)


def captioned_scenes(scenes, regions, tokenizer, rng, per_scene: int = 2) -> CaptionedScenes:
    """``per_scene`` random true captions of each scene, tokenized, and the scenes' regions."""
    captions = [[sample_caption(s, rng) for _ in range(per_scene)] for s in scenes]
    ids = [[caption_tokens(tokenizer, c.text) for c in cs] for cs in captions]
    return CaptionedScenes(list(scenes), regions(scenes, rng), captions, ids)


def parse_mask_rates(items) -> dict:
    """``["size=0.5", "relation=0.5"]`` -> ``{"size": 0.5, "relation": 0.5}`` (the command line's
    ``--mask-rates``), kinds of ``WORD_KINDS``, rates in [0, 1]."""
    rates = {}
    for item in items:
        kind, sep, value = item.partition("=")
        if not sep or kind not in WORD_KINDS:
            raise ValueError(f"mask rates are KIND=RATE with KIND one of {sorted(WORD_KINDS)}, got {item!r}")
        rates[kind] = float(value)
    return check_mask_rates(rates)


def parse_pairs(items) -> tuple:
    """``["1,0", "1,1"]`` -> ``((1, 0), (1, 1))`` (the command line's ``--co-attention-at``)."""
    pairs = []
    for item in items:
        parts = item.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"co-attention positions are T,V pairs of block indices, got {item!r}")
        pairs.append((int(parts[0]), int(parts[1])))
    return tuple(pairs)


def check_mask_rates(rates) -> dict:
    rates = dict(rates or {})
    for kind, rate in rates.items():
        if kind not in WORD_KINDS or not 0.0 <= rate <= 1.0:
            raise ValueError(f"word_mask_rates: kinds of {sorted(WORD_KINDS)} with rates in [0, 1], got {rates}")
    return rates


def word_mask_ids(tokenizer: BPETokenizer, rates) -> dict:
    """``{token id: masking rate}`` for the words of the kinds in ``rates`` (``WORD_KINDS``;
    ``mask_tokens``' ``id_probs``) that are one token after a space, as all are with the
    default BERT's tokenizer. A word the tokenizer splits (a small test vocabulary) keeps
    15%: its pieces are shared with other words."""
    out = {}
    for kind, rate in check_mask_rates(rates).items():
        for word in WORD_KINDS[kind]:
            ids = tokenizer.encode(" " + word)
            if len(ids) == 1:
                out[int(ids[0])] = float(rate)
    return out


def hard_negative(caption, scene, rng, kinds=HARD_KINDS):
    """The caption with one word of a kind in ``kinds`` changed so that it is false of
    ``scene`` (FOIL's swap; ``foil_candidates``), or None when no such change exists
    (count captions; list captions without sizes whose swaps stay true)."""
    if caption.kind not in ("list", "relation"):
        return None
    options = [c for kind, cs in foil_candidates(caption, scene).items() if kind in kinds for c in cs]
    return options[int(rng.integers(len(options)))] if options else None


def alignment_pairs(data: CaptionedScenes, index, rng, swap_prob: float = 0.5, tries: int = 20,
                    hard_negatives: float = 0.0, tokenizer: BPETokenizer | None = None):
    """One caption per scene of ``index``: its own (label 1), or with probability
    ``swap_prob`` a false one (label 0): with probability ``hard_negatives`` its own
    caption with one size or relation word swapped (``hard_negative``; needs
    ``tokenizer``), else (or when there is no such swap) another scene's caption that
    is false of it.

    Returns ``(ids list, aligned (B,) int64)``. With ``hard_negatives=0`` the draws from
    ``rng`` are the same as before hard negatives existed.
    """
    if hard_negatives and tokenizer is None:
        raise ValueError("alignment_pairs: hard_negatives needs the tokenizer")
    ids, aligned = [], []
    for i in index:
        own = int(rng.integers(len(data.captions[i])))
        if rng.random() >= swap_prob:
            ids.append(data.caption_ids[i][own])
            aligned.append(1)
            continue
        if hard_negatives and rng.random() < hard_negatives:
            foiled = hard_negative(data.captions[i][own], data.scenes[i], rng)
            if foiled is not None:
                ids.append(caption_tokens(tokenizer, foiled.text))
                aligned.append(0)
                continue
        for _ in range(tries):
            j = int(rng.integers(len(data)))
            k = int(rng.integers(len(data.captions[j])))
            if j != i and not holds(data.captions[j][k], data.scenes[i]):
                break
        else:
            raise RuntimeError(f"no false caption for scene {i} in {tries} draws")
        ids.append(data.caption_ids[j][k])
        aligned.append(0)
    return ids, np.asarray(aligned, dtype=np.int64)


def mask_regions(region_mask, rng, prob: float = 0.15, zero_prob: float = 0.9):
    """Which region tokens are masked (S08): ``(chosen, zeroed)`` bool ``(B, 1+R)``.

    Each real region (never token 0, [IMG], never padding) is chosen with
    probability ``prob``; a chosen one has its feature zeroed with probability
    ``zero_prob`` and is left as it is otherwise.
    """
    region_mask = np.asarray(region_mask, dtype=bool)
    real = region_mask.copy()
    real[:, 0] = False
    chosen = real & (rng.random(real.shape) < prob)
    zeroed = chosen & (rng.random(real.shape) < zero_prob)
    return chosen, zeroed


def pretraining_batch(data: CaptionedScenes, index, tokenizer: BPETokenizer, rng, mask: bool = True,
                      hard_negatives: float = 0.0, word_rates: dict | None = None) -> dict:
    """Everything one step needs for the scenes ``index``; masks drawn afresh from ``rng``.

    Words and regions are corrupted in every pair alike, matching or not (were
    only matching pairs masked, a [MASK] or a zeroed region would give the
    alignment label away); the masked terms then read the matching pairs
    only (``word_labels`` and ``region_chosen``). ``mask=False``: no
    corruption and no masked targets (clean pairs, for alignment alone).
    ``hard_negatives``: the share of false captions that are hard (``alignment_pairs``).
    ``word_rates``: ``{token id: rate}`` chosen at their own rate instead of 15%
    (``word_mask_ids``); the draws from ``rng`` are the same with or without.
    """
    special = tokenizer.special_tokens
    ids, aligned = alignment_pairs(data, index, rng, hard_negatives=hard_negatives, tokenizer=tokenizer)
    ids, text_mask = pad_sequences(ids, special["[PAD]"])  # (B, T)
    r = data.regions[np.asarray(index)]
    if mask:
        inputs, word_labels = mask_tokens(ids, [special[s] for s in NEVER_MASKED], tokenizer.vocab_size,
                                          special["[MASK]"], rng, id_probs=word_rates)
        chosen, zeroed = mask_regions(r.mask, rng)
    else:
        inputs, word_labels = ids, np.full(ids.shape, IGNORE_INDEX)
        chosen = zeroed = np.zeros(r.mask.shape, bool)
    word_labels[aligned == 0] = IGNORE_INDEX  # masked terms on matching pairs only
    labels = np.concatenate([np.full((len(index), 1), -1), r.labels], axis=1)  # (B, 1+R), as the tokens
    return {"ids": inputs, "text_mask": text_mask, "word_labels": word_labels,
            "feats": np.where(zeroed[..., None], 0.0, r.feats).astype(np.float32), "locs": r.locs,
            "region_mask": r.mask, "region_chosen": chosen & (aligned == 1)[:, None], "det_probs": r.det_probs,
            "region_labels": labels, "aligned": aligned}


# --------------------------------------------------------------------------- losses
def masked_region_loss(region_logits, det_probs, chosen):
    """KL(detector || predicted) per region, averaged over the ``chosen`` ones (0 if none)."""
    per_region = F.kl_div(F.log_softmax(region_logits, axis=-1), det_probs, reduction="none")  # (B, 1+R)
    weights = np.asarray(chosen, dtype=per_region.dtype)
    return (per_region * weights).sum() / max(1.0, float(weights.sum()))


def pretraining_losses(model, batch: dict) -> tuple[dict, dict]:
    """The three terms (Tensors) and the logits they came from."""
    streams = model.encode(batch["ids"], batch["text_mask"], batch["feats"], batch["locs"], batch["region_mask"])
    logits = {"words": model.mlm_logits(streams), "regions": model.region_logits(streams),
              "alignment": model.alignment_logits(streams)}
    labels = batch["word_labels"]
    terms = {
        "masked_words": (F.cross_entropy(logits["words"], labels, ignore_index=IGNORE_INDEX)
                         if (labels != IGNORE_INDEX).any() else logits["words"].sum() * 0.0),
        "masked_regions": masked_region_loss(logits["regions"], batch["det_probs"], batch["region_chosen"]),
        "alignment": F.cross_entropy(logits["alignment"], batch["aligned"]),
    }
    return terms, logits


def pretraining_loss(terms: dict, weights: dict | None = None):
    """The one loss minimised: ``sum_k weights[k] * terms[k]`` (default ``TERM_WEIGHTS``)."""
    weights = {**TERM_WEIGHTS, **(weights or {})}
    if set(weights) != set(TERMS) or any(w < 0 for w in weights.values()):
        raise ValueError(f"weights must be non-negative and name only {TERMS}, got {weights}")
    return sum((terms[name] * weights[name] for name in TERMS[1:]), terms[TERMS[0]] * weights[TERMS[0]])


def accuracies(logits: dict, batch: dict) -> dict:
    """Alignment accuracy; masked-word accuracy; masked-region accuracy (top class = the
    true class) and agreement (top class = the detector's top class)."""
    words = logits["words"].numpy().argmax(-1)
    chosen_words = batch["word_labels"] != IGNORE_INDEX
    regions = logits["regions"].numpy().argmax(-1)
    chosen = batch["region_chosen"]
    mean = lambda hits: float(hits.mean()) if hits.size else float("nan")
    return {
        "alignment_accuracy": mean(logits["alignment"].numpy().argmax(-1) == batch["aligned"]),
        "masked_word_accuracy": mean(words[chosen_words] == batch["word_labels"][chosen_words]),
        "masked_region_accuracy": mean(regions[chosen] == batch["region_labels"][chosen]),
        "masked_region_agreement": mean(regions[chosen] == batch["det_probs"].argmax(-1)[chosen]),
    }


def evaluate_pretraining(model, batch: dict, chunk: int = 250) -> dict:
    """Losses and accuracies on a fixed held-out batch, in chunks, without a graph."""
    n = len(batch["aligned"])
    sums, counts = {}, {}
    with no_grad():
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in batch.items()}
            terms, logits = pretraining_losses(model, part)
            weights = {"masked_words": (part["word_labels"] != IGNORE_INDEX).sum(),
                       "masked_regions": part["region_chosen"].sum(), "alignment": len(part["aligned"]),
                       "alignment_accuracy": len(part["aligned"]),
                       "masked_word_accuracy": (part["word_labels"] != IGNORE_INDEX).sum(),
                       "masked_region_accuracy": part["region_chosen"].sum(),
                       "masked_region_agreement": part["region_chosen"].sum()}
            values = {**{k: float(v.item()) for k, v in terms.items()}, **accuracies(logits, part)}
            for k, v in values.items():
                if weights[k]:
                    sums[k] = sums.get(k, 0.0) + v * weights[k]
                    counts[k] = counts.get(k, 0) + weights[k]
    return {k: sums[k] / counts[k] for k in sums}


# --------------------------------------------------------------------------- the run
def pretraining_data(seed: int, n_train: int, n_val: int, regions, tokenizer, rng, max_objects: int = 3):
    """The training and held-out ``CaptionedScenes`` of ``pretrain_vilbert(seed=seed)``; the
    captions are drawn from ``rng`` (``default_rng(seed)`` there), training scenes first."""
    world = ShapesWorld(image_size=32, max_objects=max_objects, seed=seed)
    train_set = captioned_scenes(world.iid_scenes(n_train, "train", rng=np.random.default_rng([seed, 1])),
                                 regions, tokenizer, rng)
    val_set = captioned_scenes(world.iid_scenes(n_val, "val", rng=np.random.default_rng([seed, 2])),
                               regions, tokenizer, rng)
    return train_set, val_set


def alignment_logits(model, batch: dict, chunk: int = 250) -> np.ndarray:
    """The alignment head's logits ``(N, 2)`` for a pretraining batch, in chunks, without a graph."""
    with no_grad():
        return np.concatenate([model.alignment_logits(model.encode(
            batch["ids"][s:s + chunk], batch["text_mask"][s:s + chunk], batch["feats"][s:s + chunk],
            batch["locs"][s:s + chunk], batch["region_mask"][s:s + chunk])).numpy()
            for s in range(0, len(batch["aligned"]), chunk)])


def held_out_alignment(model, val_set: CaptionedScenes, tokenizer: BPETokenizer, seed: int) -> dict:
    """Alignment accuracy of a pretrained model on ``pretrain_vilbert``'s held-out pairs of
    ``seed``: random negatives masked (``alignment_accuracy``, the pretraining condition) and
    unmasked (``alignment_accuracy_clean``, as zero-shot retrieval reads the head), and
    clean with hard negatives wherever the caption allows (``hard``; ``hard_negatives_only``:
    the swapped captions alone, ``positives``: the true ones of that batch)."""
    everything = np.arange(len(val_set))
    hard_batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 4]), mask=False,
                                   hard_negatives=1.0)
    right = alignment_logits(model, hard_batch).argmax(-1) == hard_batch["aligned"]
    own = {tuple(t) for cs in val_set.caption_ids for t in cs}
    swapped = np.array([tuple(t[m]) not in own for t, m in zip(hard_batch["ids"], hard_batch["text_mask"])])
    val_batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 3]))
    clean_batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 3]), mask=False)
    return {"alignment_accuracy": evaluate_pretraining(model, val_batch)["alignment_accuracy"],
            "alignment_accuracy_clean": evaluate_pretraining(model, clean_batch)["alignment_accuracy"],
            "hard": float(right.mean()), "hard_negatives_only": float(right[swapped].mean()),
            "n_hard_negatives": int(swapped.sum()), "positives": float(right[hard_batch["aligned"] == 1].mean())}


def pretrain_vilbert(kind: str = "vilbert", steps: int = PRETRAIN_STEPS, batch_size: int = 64, lr: float = 2e-3,
                     warmup: int = 100, n_train: int = 4000, n_val: int = 500, eval_every: int = 250,
                     seed: int = 0, config: ViLBERTConfig | None = None, bert=True, regions=None,
                     tokenizer: BPETokenizer | None = None, match: bool = True, max_objects: int = 3,
                     progress: bool = True, out: str | Path | None = None, weights: dict | None = None,
                     hard_negatives: float = HARD_SHARE, word_mask_rates: dict | None = None) -> dict:
    """Pretrain a ``kind`` model (``MODELS``) by masked multi-modal modelling + alignment.

    ``weights``: the terms' weights in the loss (``pretraining_loss``; default ``TERM_WEIGHTS``).
    ``hard_negatives``: the share of training negatives that are hard (0: the paper's
    random captions only). Held-out alignment is measured on random negatives, masked
    (``alignment_accuracy``) and unmasked (``alignment_accuracy_clean``; see
    ``ALIGNMENT_CONDITIONS``), and, unmasked, on hard ones wherever the caption allows
    (``alignment_accuracy_hard``). ``word_mask_rates``: ``{kind: rate}``, the training
    masking rate of the words of those kinds (``WORD_KINDS``; None: ``WORD_MASK_RATES``); the
    held-out batches keep 15% for every word, so their figures compare across rates.

    ``bert``: True initialises the text stream from ``default_bert()`` (and
    uses its tokenizer), False leaves it random (then ``tokenizer`` is
    needed), or a ``BERT`` to load. ``regions``: the region function (default:
    the trained detector's). ``match``: a baseline gets the depths that match
    ViLBERT's parameter count. Returns ``{"model", "history", "terms",
    "metrics", "tokenizer"}``; with ``out``, writes the model there
    (``save_checkpoint``, the metrics in its metadata) and ``tokenizer.json``.
    """
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    if not 0.0 <= hard_negatives <= 1.0:
        raise ValueError(f"hard_negatives must be a share in [0, 1], got {hard_negatives}")
    pretraining_loss(dict.fromkeys(TERMS, 0.0), weights)  # bad weights fail before any work
    word_mask_rates = check_mask_rates(WORD_MASK_RATES if word_mask_rates is None else word_mask_rates)
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    if bert is True:
        bert, tokenizer = default_bert(progress)
    if tokenizer is None:
        raise ValueError("pretrain_vilbert: give a tokenizer when bert is not True")
    regions = regions or default_regions()
    word_rates = word_mask_ids(tokenizer, word_mask_rates)
    train_set, val_set = pretraining_data(seed, n_train, n_val, regions, tokenizer, rng, max_objects)

    base = config or ViLBERTConfig()
    longest = max(len(ids) for cs in train_set.caption_ids + val_set.caption_ids for ids in cs)
    base = replace(base, vocab_size=tokenizer.vocab_size, max_len=max(base.max_len, longest),
                   feat_dim=train_set.regions.feats.shape[-1], n_region_classes=train_set.regions.det_probs.shape[-1])
    if bert is not None and bert is not False:  # the text stream takes BERT's shape
        b = bert.config
        base = replace(base, text_dim=b.dim, text_heads=b.num_heads, text_mlp_dim=int(b.dim * b.mlp_ratio),
                       max_len=min(b.max_len, base.max_len))
    model = MODELS[kind](matched_config(kind, base) if match else base)
    if bert is not None and bert is not False:
        model.load_bert(bert)

    everything = np.arange(len(val_set))
    val_batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 3]))
    clean_batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 3]), mask=False)
    hard_batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 4]), mask=False,
                                   hard_negatives=1.0)

    def evaluate():
        clean = evaluate_pretraining(model, clean_batch)
        hard = evaluate_pretraining(model, hard_batch)
        return {**evaluate_pretraining(model, val_batch), "alignment_accuracy_clean": clean["alignment_accuracy"],
                "alignment_accuracy_hard": hard["alignment_accuracy"]}

    start = {"step": 0, **run_eval(model, evaluate)}
    terms = {t: [] for t in TERMS}

    def step(model, batch):
        parts, _ = pretraining_losses(model, batch)
        for name, value in parts.items():
            terms[name].append(float(value.item()))
        return pretraining_loss(parts, weights)

    def batches():
        while True:
            yield pretraining_batch(train_set, rng.choice(len(train_set), batch_size, replace=False), tokenizer, rng,
                                    hard_negatives=hard_negatives, word_rates=word_rates)

    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    scheduler = WarmupCosineLR(optimizer, steps, min(warmup, steps), min_lr=lr / 10)
    history = train(model, step, batches(), optimizer, steps, scheduler, evaluate=evaluate,
                    eval_every=eval_every, progress=progress, desc=f"pretrain {kind}")
    history.after(0, start)
    final = history.last_eval()
    metrics = {"kind": kind, "parameters": model.num_parameters(), "steps": steps,
               "train_seconds": history.seconds, "start": start, "held_out": final,
               "term_weights": {**TERM_WEIGHTS, **(weights or {})}, "hard_negatives": hard_negatives,
               "hard_kinds": list(HARD_KINDS), "word_mask_rates": word_mask_rates,
               "word_mask_tokens": len(word_rates),
               "region_source": getattr(train_set.regions, "source", "unknown"),
               "text_init": "minivl BERT" if bert is not None and bert is not False else "random",
               "alignment_conditions": ALIGNMENT_CONDITIONS}
    model.eval()
    if out is not None:
        out = Path(out)
        save_checkpoint(model, out / f"{kind}.safetensors", metrics=json.dumps(metrics))
        tokenizer.save(out / "tokenizer.json")
    return {"model": model, "history": history, "terms": terms, "metrics": metrics, "tokenizer": tokenizer}


def checkpoint_arguments(parser):
    """The options of the scripts that read ``vilbert pretrain`` checkpoints again on their
    held-out scenes (this module's ``main``, ``vilbert_alignment_errors``)."""
    parser.add_argument("--checkpoint", nargs="+", required=True, help="folders with vilbert.safetensors")
    parser.add_argument("--seed", type=int, nargs="+", required=True, help="each checkpoint's pretraining seed")
    parser.add_argument("--n-train", type=int, default=4000, help="as pretrained (the captions' draws depend on it)")
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--out", required=True)
    return parser


def each_checkpoint(args, analyse) -> list[dict]:
    """``analyse(model, val_set, tokenizer, seed) -> dict`` for every ``--checkpoint`` / ``--seed``
    pair, on the held-out scenes that checkpoint's pretraining drew (rebuilt from its seed); one
    record per checkpoint, printed as it ends."""
    from threadpoolctl import threadpool_limits

    from minivl.models.vilbert import ViLBERT

    threadpool_limits(1)
    _, tokenizer = default_bert()
    regions = default_regions()
    runs = []
    for folder, seed in zip(args.checkpoint, args.seed, strict=True):
        model = load_checkpoint(ViLBERT, Path(folder) / "vilbert.safetensors").eval()
        _, val_set = pretraining_data(seed, args.n_train, args.n_val, regions, tokenizer, np.random.default_rng(seed))
        runs.append({"checkpoint": str(folder), "seed": seed, **analyse(model, val_set, tokenizer, seed)})
        print(json.dumps(runs[-1]), flush=True)
    return runs


def main(argv=None) -> None:
    """``python -m minivl.recipes.vilbert --checkpoint FOLDER --seed S --out X.json``: the
    held-out alignment (``held_out_alignment``) of a ``vilbert pretrain`` checkpoint."""
    import argparse
    import os
    import sys

    parser = checkpoint_arguments(argparse.ArgumentParser(description=main.__doc__.split(":")[0]))
    args = parser.parse_args(argv)
    runs = each_checkpoint(args, held_out_alignment)
    Path(args.out).write_text(json.dumps({
        "command": "python -m minivl.recipes.vilbert " + " ".join(sys.argv[1:] if argv is None else argv),
        "load_average": os.getloadavg(), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
