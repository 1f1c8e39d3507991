"""Exercises on text tokens: a BPE merge step, BPE training, BERT's 80/10/10 masking.

BPE follows Sennrich et al. (2016) on UTF-8 bytes, as GPT-2 does and as
``minivl/tokenizers/training.py`` implements it; BERT's masked-LM corruption
follows Devlin et al. (2019), section 3.1 (lecture S01, and S08 where ViLBERT
reuses it for words).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.tokenizers.merge import merge_pair
from minivl.tokenizers.training import train_merges_naive

# --------------------------------------------------------------------------- one merge

BPE_MERGE_STUB = '''
def bpe_merge(ids, pair, new_id):
    """Replace every occurrence of the adjacent pair (a, b) in the list ``ids`` by ``new_id``.

    Occurrences are taken greedily from the left and do not overlap: with
    pair (7, 7), [7, 7, 7] becomes [new_id, 7]. Returns a new list of ints.
    """
    raise NotImplementedError("bpe_merge")
'''


def _merge_from_right(ids, pair, new_id):
    return merge_pair(ids[::-1], pair[::-1], new_id)[::-1]


def _merge_no_skip(ids, pair, new_id):
    out = []
    for i, t in enumerate(ids):
        out.append(new_id if i + 1 < len(ids) and (t, ids[i + 1]) == tuple(pair) else t)
    return out


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def _merge_recursive(ids, pair, new_id):
    if len(ids) < 2:
        return list(ids)
    if (ids[0], ids[1]) == tuple(pair):
        return [new_id] + _merge_recursive(ids[2:], pair, new_id)
    return [ids[0]] + _merge_recursive(ids[1:], pair, new_id)


@st.composite
def _merge_inputs(draw):
    ids = draw(st.lists(st.integers(0, 3), max_size=16))
    pair = draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))
    if len(ids) >= 2 and draw(st.booleans()):  # mostly a pair that occurs
        i = draw(st.integers(0, len(ids) - 2))
        pair = (ids[i], ids[i + 1])
    if draw(st.booleans()):  # a run of three equal ids, where the pair (a, a) overlaps itself
        a = draw(st.integers(0, 3))
        ids, pair = ids + [a, a, a], (a, a)
    return {"ids": ids, "pair": pair, "new_id": 256}


BPE_MERGE = Exercise(
    name="bpe_merge", slide="S26", part="ex0_transformers", title="one BPE merge step",
    stub=BPE_MERGE_STUB, reference=merge_pair,
    solution="minivl/tokenizers/merge.py::merge_pair",
    inputs=_merge_inputs(),
    mistakes=[
        Mistake("merged from the right", "scan left to right: in a run like 7 7 7 the first two merge.",
                _merge_from_right),
        Mistake("no skip after a merge", "after replacing ids[i], ids[i+1] by new_id, continue at i + 2: "
                "the second element of the pair is consumed.", _merge_no_skip),
        Mistake("first occurrence only", "replace every occurrence of the pair, not only the first.",
                _merge_first_only),
    ],
    hint="walk with an index i; if (ids[i], ids[i+1]) == pair append new_id and i += 2, else append ids[i], i += 1.",
)
BPE_MERGE.alternative = _merge_recursive

# --------------------------------------------------------------------------- training

BPE_TRAIN_STUB = '''
def bpe_train(text, num_merges):
    """Learn num_merges BPE merges from ``text`` (a str), on its UTF-8 bytes.

    Start from ids = list(text.encode("utf-8")) (one chunk, no pre-splitting).
    At step r: count every adjacent pair of ids; take the most frequent pair,
    breaking ties by the smallest pair (compare (a, b) as tuples); replace it by
    the new id 256 + r (left to right, as bpe_merge does). Stop early when no
    pair is left. Returns the list of merged pairs [(a, b), ...] in order.
    """
    raise NotImplementedError("bpe_train")
'''


def _bpe_train(text, num_merges):
    return train_merges_naive([text.encode("utf-8")], num_merges)


def _train(text, num_merges, choose, ids=None, first_id=256, update=True):
    ids = list(text.encode("utf-8")) if ids is None else ids
    merges = []
    for r in range(num_merges):
        counts = Counter(zip(ids, ids[1:]))
        if not counts:
            break
        pair = choose(counts)
        merges.append(pair)
        if update:
            ids = merge_pair(ids, pair, first_id + r)
    return merges


def _train_first_seen(text, n):
    return _train(text, n, lambda c: max(c, key=c.get))  # Counter keeps first-seen order: ties go to it


def _train_chars(text, n):
    return _train(text, n, lambda c: min(c, key=lambda p: (-c[p], p)), ids=[ord(ch) for ch in text])


def _train_no_update(text, n):
    return _train(text, n, lambda c: min(c, key=lambda p: (-c[p], p)), update=False)


def _train_sorted(text, num_merges):
    ids, merges = list(text.encode("utf-8")), []
    for r in range(num_merges):
        counts = {}
        for a, b in zip(ids, ids[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        merges.append(best)
        ids = _merge_recursive(ids, best, 256 + r)
    return merges


BPE_TRAIN = Exercise(
    name="bpe_train", slide="S26", part="ex0_transformers", title="BPE training on a small text",
    stub=BPE_TRAIN_STUB, reference=_bpe_train,
    solution="minivl/tokenizers/training.py::train_merges_naive (and train_merges, the fast one)",
    inputs=st.fixed_dictionaries({"text": st.text(alphabet="ab é", max_size=24), "num_merges": st.integers(1, 5)}),
    mistakes=[
        Mistake("ties to the first pair seen", "when two pairs are equally frequent take the smallest pair "
                "(min over (-count, pair)), not the first one counted (max(counts, key=counts.get)).",
                _train_first_seen),
        Mistake("characters instead of bytes", "BPE here runs on UTF-8 bytes: 'é' is two ids (195, 169), "
                "use list(text.encode('utf-8')), not ord() of each character.", _train_chars),
        Mistake("ids not updated", "after choosing a pair, replace it in ids (with bpe_merge) before counting "
                "again, or the same pair wins every step.", _train_no_update),
    ],
)
BPE_TRAIN.alternative = _train_sorted

# --------------------------------------------------------------------------- BERT masking

BERT_MASKING_STUB = '''
def bert_masking(ids, special_ids, vocab_size, mask_id, rng):
    """BERT's masked-LM corruption of a batch of token ids (B, N) (integers).

    Every token whose id is not in special_ids is *chosen* with probability 0.15
    (special tokens, [MASK] among them, never are). A chosen token becomes
    mask_id with probability 0.8, a random id drawn uniformly from the
    non-special ids of range(vocab_size) with probability 0.1, and stays
    itself with probability 0.1. Use the NumPy Generator ``rng`` for every draw.

    Returns (inputs, labels), both (B, N) integers: inputs is the corrupted
    batch; labels holds the original id at chosen positions and -100 elsewhere.
    """
    raise NotImplementedError("bert_masking")
'''

SPECIAL, VOCAB, MASK = (0, 1, 2, 3), 50, 3
Z = 5.0  # every rate must lie within 5 standard errors: a correct solution fails a check with p < 6e-7


def _bert_masking(ids, special_ids, vocab_size, mask_id, rng, prob=0.15):
    special = np.asarray(sorted(set(special_ids)))
    ordinary = np.setdiff1d(np.arange(vocab_size), special)
    chosen = (rng.random(ids.shape) < prob) & ~np.isin(ids, special)
    action = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = ordinary[rng.integers(len(ordinary), size=int(swap.sum()))]
    return inputs, np.where(chosen, ids, -100)


def _rate_problem(name, k, n, p):
    if n == 0:
        return None
    se = np.sqrt(p * (1 - p) / n)
    if abs(k / n - p) > Z * se:
        return f"{name}: {k / n:.1%} of {n}, expected {p:.1%} (allowed {p - Z * se:.1%} to {p + Z * se:.1%})"
    return None


HINT_SPECIAL = ("exclude special_ids from the choice: "
                "chosen = (rng.random(ids.shape) < 0.15) & ~np.isin(ids, special_ids)")
HINT_LABELS = "labels = np.where(chosen, ids, -100): only the chosen tokens get a label"
HINT_SPLIT = ("of the chosen tokens 80% become [MASK], 10% a random non-special id and 10% stay themselves: "
              "draw one uniform u per token (u < 0.8, 0.8 <= u < 0.9, else)")
HINT_RATE = "choose each non-special token with probability 0.15"


def _bert_statistics(student):
    """Fixed seeds; each rate compared with its expectation within Z standard errors."""
    ids = np.random.default_rng(7).integers(0, VOCAB, size=(64, 128))
    out = student(ids.copy(), list(SPECIAL), VOCAB, MASK, np.random.default_rng(0))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return [("bert_masking must return the tuple (inputs, labels)", "return inputs, labels")], ""
    inputs, labels = (np.asarray(o) for o in out)
    if inputs.shape != ids.shape or labels.shape != ids.shape or inputs.dtype.kind not in "iu" \
            or labels.dtype.kind not in "iu":
        return [(f"inputs {inputs.shape} {inputs.dtype} and labels {labels.shape} {labels.dtype} must be integer "
                 f"arrays of the shape of ids {ids.shape}", "build them with ids.copy() and np.where")], ""
    special = np.isin(ids, SPECIAL)
    chosen = labels != -100
    if chosen.mean() > 0.5:
        return [(f"labels are set at {chosen.mean():.0%} of the positions, expected about 15%", HINT_LABELS)], ""
    findings = []
    if (chosen & special).any():
        findings.append((f"{int((chosen & special).sum())} special tokens were chosen", HINT_SPECIAL))
    if (labels[chosen] != ids[chosen]).any():
        findings.append(("labels at chosen positions differ from the original ids", HINT_LABELS))
    if (inputs[~chosen] != ids[~chosen]).any():
        findings.append(("tokens without a label were changed", "corrupt only the chosen tokens, and give "
                         "every chosen token its label"))
    chosen &= ~special
    replaced = chosen & (inputs != MASK) & (inputs != ids)
    if np.isin(inputs[replaced], SPECIAL).any():
        findings.append(("a random replacement was a special id", "draw replacements from the non-special ids only"))
    n, c = int((~special).sum()), int(chosen.sum())
    n_ord = VOCAB - len(SPECIAL)
    rates = [("chosen among non-special tokens", c, n, 0.15, HINT_RATE),
             ("of the chosen, replaced by [MASK]", int((inputs[chosen] == MASK).sum()), c, 0.8, HINT_SPLIT),
             ("of the chosen, replaced by another id", int(replaced.sum()), c, 0.1 * (1 - 1 / n_ord), HINT_SPLIT),
             ("of the chosen, left unchanged", int((inputs[chosen] == ids[chosen]).sum()), c, 0.1 + 0.1 / n_ord,
              HINT_SPLIT)]
    for name, k, m, p, hint in rates:
        problem = _rate_problem(name, k, m, p)
        if problem:
            findings.append((problem, hint))
    verified = (f"on {ids.size} tokens (fixed seeds), {c / max(n, 1):.1%} of the non-special tokens chosen; of "
                f"those {rates[1][1] / max(c, 1):.1%} [MASK], {rates[2][1] / max(c, 1):.1%} random, "
                f"{rates[3][1] / max(c, 1):.1%} unchanged; each rate within {Z:g} standard errors of 15% and "
                "80/10/10; specials untouched, labels right.")
    return findings, verified


def _mask_all(ids, special_ids, vocab_size, mask_id, rng):
    chosen = (rng.random(ids.shape) < 0.15) & ~np.isin(ids, special_ids)
    return np.where(chosen, mask_id, ids), np.where(chosen, ids, -100)


def _mask_specials_too(ids, special_ids, vocab_size, mask_id, rng):
    return _bert_masking(ids, [], vocab_size, mask_id, rng)


def _labels_everywhere(ids, special_ids, vocab_size, mask_id, rng):
    return _bert_masking(ids, special_ids, vocab_size, mask_id, rng)[0], ids.copy()


def _bert_loop(ids, special_ids, vocab_size, mask_id, rng):
    ordinary = [i for i in range(vocab_size) if i not in special_ids]
    inputs, labels = ids.copy(), np.full_like(ids, -100)
    for idx in np.ndindex(ids.shape):
        if ids[idx] in special_ids or rng.random() >= 0.15:
            continue
        labels[idx] = ids[idx]
        u = rng.random()
        if u < 0.8:
            inputs[idx] = mask_id
        elif u < 0.9:
            inputs[idx] = ordinary[rng.integers(len(ordinary))]
    return inputs, labels


BERT_MASKING = Exercise(
    name="bert_masking", slide="S08", part="ex0_transformers", title="BERT's 80/10/10 masking",
    stub=BERT_MASKING_STUB, reference=_bert_masking,
    solution="minivl/models/bert.py::mask_tokens",
    statistical=_bert_statistics,
    mistakes=[
        Mistake("every chosen token masked", HINT_SPLIT, _mask_all),
        Mistake("specials chosen", HINT_SPECIAL, _mask_specials_too),
        Mistake("labels everywhere", HINT_LABELS, _labels_everywhere),
    ],
)
BERT_MASKING.alternative = _bert_loop

EXERCISES = [BPE_MERGE, BPE_TRAIN, BERT_MASKING]
