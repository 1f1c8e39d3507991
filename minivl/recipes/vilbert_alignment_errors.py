"""What ViLBERT's held-out alignment errors are (lecture S09, issue 12).

Alignment (``minivl/recipes/vilbert.py``) is scored on 500 held-out scenes, each
paired with its own caption or, with probability 0.5, another scene's caption
that is false of it. This recipe splits the errors: true captions rejected,
and false ones accepted by *how* the false caption differs from the scene
(``negative_kind``):

* ``object``: a colour or shape it names is in no object of the scene (a phrase
  fits nothing even with its size word dropped);
* ``size``: every phrase fits an object once sizes are dropped, so only a size
  word is wrong;
* ``count``: a count caption whose every shape is there, in other numbers;
* ``relation``: a relation caption whose two phrases fit two objects that stand
  in another relation, so only the relation is wrong;
* ``number``: a list caption whose phrases each fit some object but not one
  each (it names more objects than fit).

    python -m minivl.recipes.vilbert_alignment_errors --checkpoint FOLDER_S0 FOLDER_S1 --seed 0 1 \\
        --out results/vilbert_alignment_errors.json

The pairs are ``held_out_alignment``'s: the masked batch (the headline figure)
and the clean one, drawn as ``pretrain_vilbert`` draws them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from minivl.data.captions import Caption, _fit_distinct, holds
from minivl.data.shapes import Scene

NEGATIVE_KINDS = ("object", "size", "count", "relation", "number")


def _no_size(caption: Caption) -> Caption:
    return replace(caption, phrases=tuple(replace(p, size=None) for p in caption.phrases))


def negative_kind(caption: Caption, scene: Scene) -> str:
    """How a caption false of ``scene`` is false (one of ``NEGATIVE_KINDS``; module docstring)."""
    if holds(caption, scene):
        raise ValueError(f"negative_kind: {caption.text!r} is true of the scene")
    bare = _no_size(caption)
    if any(not p.select(scene) for p in bare.phrases):
        return "object"
    if caption.kind == "count":
        return "count"
    if caption.kind == "relation":
        a, b = caption.phrases
        pair = any(x != y for x in a.select(scene) for y in b.select(scene))
        if pair:
            return "relation"
        return "size" if any(x != y for x in bare.phrases[0].select(scene) for y in bare.phrases[1].select(scene)) \
            else "number"
    if _fit_distinct(caption.phrases, scene.objects, frozenset()):
        raise AssertionError("a list caption that fits distinct objects holds")
    return "size" if _fit_distinct(bare.phrases, scene.objects, frozenset()) else "number"


def error_breakdown(aligned, predicted, kinds) -> dict:
    """Accuracy on the true pairs and on the false ones, each split by ``kinds[i]`` (a true
    pair's caption kind, a false pair's ``negative_kind``), with counts and errors."""
    aligned, predicted = np.asarray(aligned), np.asarray(predicted)
    kinds = np.asarray(kinds, dtype=object)
    right = aligned == predicted
    out = {"accuracy": float(right.mean()), "n": int(len(aligned))}
    for side, label in (("positives", 1), ("negatives", 0)):
        where = aligned == label
        out[side] = {"accuracy": float(right[where].mean()) if where.any() else float("nan"),
                     "n": int(where.sum()), "errors": int((~right[where]).sum()), "by_kind": {}}
        for kind in sorted(set(kinds[where])):
            part = where & (kinds == kind)
            out[side]["by_kind"][kind] = {"accuracy": float(right[part].mean()), "n": int(part.sum()),
                                          "errors": int((~right[part]).sum())}
    return out


def analyse(model, val_set, tokenizer, seed: int) -> dict:
    """``error_breakdown`` of the masked and the clean held-out pairs of ``seed``
    (``held_out_alignment``'s pairs: ``pretraining_batch`` with ``default_rng([seed, 3])``)."""
    from minivl.recipes.vilbert import alignment_logits, alignment_pairs, pretraining_batch

    everything = np.arange(len(val_set))
    # the same first draws as pretraining_batch's: which caption each pair got
    ids, aligned = alignment_pairs(val_set, everything, np.random.default_rng([seed, 3]))
    by_ids = {tuple(t): c for ts, cs in zip(val_set.caption_ids, val_set.captions) for t, c in zip(ts, cs)}
    captions = [by_ids[tuple(t)] for t in ids]
    kinds = [c.kind if a else negative_kind(c, val_set.scenes[i])
             for i, (c, a) in enumerate(zip(captions, aligned))]
    out = {}
    for name, mask in (("masked", True), ("clean", False)):
        batch = pretraining_batch(val_set, everything, tokenizer, np.random.default_rng([seed, 3]), mask=mask)
        assert (batch["aligned"] == aligned).all()
        logits = alignment_logits(model, batch)
        out[name] = error_breakdown(aligned, logits.argmax(-1), kinds)
        # the false pairs again, by the false caption's kind and number of phrases ("count/1": "one cross.")
        shapes = [f"{c.kind}/{len(c.phrases)}" for c in captions]
        out[name]["negatives_by_caption"] = error_breakdown(aligned, logits.argmax(-1), shapes)["negatives"]["by_kind"]
        accepted = [captions[i].text for i in np.flatnonzero((aligned == 0) & (logits.argmax(-1) == 1))]
        out[name]["accepted_examples"] = accepted[:8]
    return out


def main(argv=None) -> None:
    import argparse

    from minivl.recipes.vilbert import checkpoint_arguments, each_checkpoint

    parser = checkpoint_arguments(argparse.ArgumentParser(description="ViLBERT's held-out alignment errors by kind"))
    args = parser.parse_args(argv)
    began = time.time()
    runs = each_checkpoint(args, analyse)
    Path(args.out).write_text(json.dumps({
        "command": "python -m minivl.recipes.vilbert_alignment_errors " + " ".join(sys.argv[1:] if argv is None
                                                                                  else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - began, 1),
        "load_average": os.getloadavg(), "negative_kinds": NEGATIVE_KINDS, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
