"""Does a VCR count question's size word reach the answer? (lecture S10; issue 12, VCR Q->AR)

VCR's count answers stay near 44% because most count items count by size ("how many small
shapes are there?"; ``MultipleChoiceItem.detail`` "count:size"). Sizes are absolute (a side of
3/16 or 5/16 of the image), so each region's area feature separates them with no overlap. This
asks whether the fine-tuned model's answer depends on the size word at all.

ViLBERT is fine-tuned on VCR exactly as the transfer table does it
(``minivl/recipes/vilbert_table.py``: the same data, schedule, learning rates and pretrained
checkpoint), then every "count:size" item (test, and the first training items) is read twice:
as asked, and with each size word of the question and of the four answers swapped (small <->
large, little <-> big; the number words stay, so the options are the same counts), whose right
answer is the count of the other size. A model that reads the size word answers the two
differently wherever the two counts differ; one that ignores it gives both the same count,
and then at best the count of one of them (or of all the shapes). Per part:

* ``asked`` / ``swapped``: Q->A accuracy on the questions as asked and swapped;
* ``same_answer``: the share of items whose two answers are the same count, and
  ``same_answer_where_counts_differ`` among those whose two true counts differ;
* ``answers_total``: the share of answers that are the scene's number of shapes (counting
  everything), against ``total_is_right``, the share where that would be right;
* ``mean_abs_error``: the mean |answered - true| count, as asked and swapped.

    python -m minivl.recipes.vilbert_vcr_sizes --seed 0 --out results/vilbert_vcr_sizes_s0.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from minivl.data.language import NUMBER_WORDS, SIZE_WORDS

_SWAP = {a: b for small, large in zip(*SIZE_WORDS) for a, b in ((small, large), (large, small))}
_SIZE_RE = re.compile(r"\b(" + "|".join(_SWAP) + r")\b")


def swap_sizes(text: str) -> str:
    """Every size word swapped for the other size's word of the same variant ("small" <->
    "large", "little" <-> "big")."""
    return _SIZE_RE.sub(lambda m: _SWAP[m.group(1)], text)


def asked_size(question: str) -> int:
    """The size index (0 small, 1 large) a "count:size" question names."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    named = [k for k, synonyms in enumerate(SIZE_WORDS) if words & set(synonyms)]
    if len(named) != 1:
        raise ValueError(f"expected one size named in {question!r}, got {named}")
    return named[0]


def answer_count(answer: str) -> int:
    """The count a count answer gives: "there are no small shapes." -> 0, "there is one ..." -> 1."""
    words = answer.split()
    number = words[2]
    return 0 if number == "no" else NUMBER_WORDS.index(number)


def answer_logits(model, split, index, tokenizer, swap: bool, batch_size: int = 32) -> np.ndarray:
    """The Q->A logits ``(len(index), 4)`` of items ``index`` of a VCR split, the texts re-encoded
    (size words swapped when ``swap``); the answer passes are the first four of each item."""
    from minivl.data.loader import pad_sequences
    from minivl.data.vilbert_tasks import encode_text
    from minivl.recipes.vilbert_transfer import encoder_outputs
    from minivl.tensor import no_grad

    model.eval()
    out = []
    r = split.regions
    for start in range(0, len(index), batch_size):
        rows = index[start:start + batch_size]
        ids = []
        for i in rows:
            for text in split.texts[i][:4]:
                question, answer = text.split(" [SEP] ", 1)
                if swap:
                    question, answer = swap_sizes(question), swap_sizes(answer)
                ids.append(encode_text(tokenizer, question, answer)[0])
        ids, text_mask = pad_sequences(ids, tokenizer.special_tokens["[PAD]"])
        scenes = np.repeat(split.images[rows, 0], 4)
        batch = {"ids": ids, "text_mask": text_mask, "feats": r.feats[scenes], "locs": r.locs[scenes],
                 "region_mask": r.mask[scenes]}
        with no_grad():
            out.append(model.head(encoder_outputs(model.encoder, batch)[2]).numpy().reshape(-1, 4))
    return np.concatenate(out)


def size_swap_scores(model, split, tokenizer, limit: int | None = None) -> dict:
    """The figures of the module docstring on the "count:size" items of ``split`` (the first
    ``limit`` items of the split only, when given)."""
    n = len(split) if limit is None else min(limit, len(split))
    index = np.array([i for i in range(n) if split.targets["detail"][i] == "count:size"])
    counts = np.array([[answer_count(t.split(" [SEP] ", 1)[1]) for t in split.texts[i][:4]] for i in index])
    size = np.array([asked_size(split.texts[i][0].split(" [SEP] ", 1)[0]) for i in index])
    sizes = [split.scenes[split.images[i, 0]].sizes for i in index]
    true_asked = np.array([int((s == k).sum()) for s, k in zip(sizes, size)])
    true_other = np.array([int((s != k).sum()) for s, k in zip(sizes, size)])
    total = np.array([len(s) for s in sizes])
    right = counts[np.arange(len(index)), split.targets["answer"][index]]
    if not (right == true_asked).all():
        raise AssertionError("the labelled answer is not the count of the size asked")
    both = {}
    for name, swap in (("asked", False), ("swapped", True)):
        logits = answer_logits(model, split, index, tokenizer, swap)
        both[name] = counts[np.arange(len(index)), logits.argmax(1)]
    differ = true_asked != true_other
    a, s = both["asked"], both["swapped"]
    return {"items": int(len(index)), "asked": float((a == true_asked).mean()),
            "swapped": float((s == true_other).mean()),
            "same_answer": float((a == s).mean()),
            "same_answer_where_counts_differ": float((a == s)[differ].mean()) if differ.any() else None,
            "items_where_counts_differ": int(differ.sum()),
            "answers_total": float(np.concatenate([a == total, s == total]).mean()),
            "total_is_right": float(np.concatenate([true_asked == total, true_other == total]).mean()),
            "mean_abs_error": {"asked": float(np.abs(a - true_asked).mean()),
                               "swapped": float(np.abs(s - true_other).mean())},
            "answered": {"asked": np.bincount(a, minlength=4).tolist(),
                         "swapped": np.bincount(s, minlength=4).tolist()},
            "truth": {"asked": np.bincount(true_asked, minlength=4).tolist(),
                      "swapped": np.bincount(true_other, minlength=4).tolist()}}


def main(argv=None) -> None:
    from threadpoolctl import threadpool_limits

    import minivl
    from minivl import backend
    from minivl.checkpoint import cache_dir
    from minivl.data.regions import RegionEncoder
    from minivl.data.vilbert_tasks import make_task, scene_parts
    from minivl.data.world import ShapesWorld
    from minivl.recipes.vilbert import PRETRAIN_STEPS, default_bert, parse_pairs
    from minivl.recipes.vilbert_table import SCHEDULE, base_config, pretrained_encoder, task_sizes
    from minivl.recipes.vilbert_transfer import finetune

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-steps", type=int, default=PRETRAIN_STEPS)
    parser.add_argument("--steps", type=int, default=SCHEDULE["vcr"][0], help="VCR fine-tuning steps")
    parser.add_argument("--co-attention-at", nargs="+", metavar="T,V", help="default: ViLBERTConfig's")
    parser.add_argument("--train-items", type=int, default=1000, help="training items read as well")
    parser.add_argument("--backend", choices=("numpy", "numba"), default="numba")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    threadpool_limits(1)
    minivl.use(args.backend)
    began, load_before = time.time(), os.getloadavg()
    pairs = None if args.co_attention_at is None else parse_pairs(args.co_attention_at)
    bert, tokenizer = default_bert(False)
    regions = RegionEncoder.load_default(progress=False)
    world = ShapesWorld(image_size=regions.image_size, max_objects=3, seed=0)
    config = base_config(bert, tokenizer, regions, pairs)
    sizes = task_sizes("vcr")
    data = make_task("vcr", world, tokenizer, regions, seed=0, max_len=config.max_len,
                     parts=scene_parts(world, regions, sizes, seed=0))
    encoder = pretrained_encoder("vilbert", args.seed, args.pretrain_steps, cache_dir(), False, regions,
                                 None, pairs)
    run = finetune("vcr", encoder, data, steps=args.steps, batch_size=SCHEDULE["vcr"][1], lr=1e-3, head_lr=3e-3,
                   seed=args.seed, progress=False)
    model = run["model"]
    out = {"command": "python -m minivl.recipes.vilbert_vcr_sizes " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seed": args.seed,
           "pretrain_steps": args.pretrain_steps, "steps": args.steps, "scenes": list(sizes),
           "co_attention_at": [list(p) for p in encoder.config.co_attention_at], "backend": backend.current(),
           "test_metrics": run["metrics"]["test"], "train_seconds": run["metrics"]["train_seconds"],
           "size_swap": {"test": size_swap_scores(model, data["test"], tokenizer),
                         "train": size_swap_scores(model, data["train"], tokenizer, args.train_items)},
           "seconds": round(time.time() - began, 1), "load_average_before": load_before,
           "load_average_after": os.getloadavg(), "machine": f"{os.uname().machine}, {os.cpu_count()} cores"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["size_swap"], indent=1), flush=True)


if __name__ == "__main__":
    main()
