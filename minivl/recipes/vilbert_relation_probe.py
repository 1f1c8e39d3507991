"""Do ViLBERT's words know where the objects they name are? (lectures S06, S10; issue 12)

FOIL's relation swaps ("left" for "right") sit at chance and a masked relation
word is predicted as well from another scene's regions as from its own. The
location is in the regions (``minivl/recipes/vilbert_probe.py``: a region's
x-centre is read from the visual stream at R^2 0.5-0.7), and the relation is
a function of the two named objects' boxes (``relation_holds``). So the
question is whether co-attention carries a region's location to the words
that name it, and the two locations to the relation word. Ridge probes
(``ridge_probe``, fitted on 3/4, scored on 1/4) on the last text states of a
pretrained model, for true captions "a <A> <rel> a <B>." whose phrases each
fit exactly one object:

* at A's shape word: A's x-centre and y-centre (R^2);
* at the relation word: ``dx = x_A - x_B`` and ``dy = y_A - y_B`` (R^2), and
  whether the relation is true (the caption's own relation against its
  opposite, a ridge classifier on the relation word's state, split by item:
  ``paired_probe``; chance 50%);
* each with the caption's own regions and with another scene's regions (the
  targets still the own scene's): what the words read from the image is the
  difference;
* the visual stream's state of A's region: its x-centre (the reference);
* where A's shape word looks in each co-attention layer (``attention_on``): its
  weight on A's region, and how often A's region gets the most.

    python -m minivl.recipes.vilbert_relation_probe --checkpoint FOLDER_S0 FOLDER_S1 \\
        --out results/vilbert_relation_probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from minivl.data.captions import Caption
from minivl.data.language import OPPOSITE, describe, split_words
from minivl.data.shapes import SHAPES, relation_holds

SPATIAL = ("left", "right", "above", "below")


def relation_items(scenes, rng, relations=SPATIAL) -> list[dict]:
    """Per scene with one, a true relation caption whose two phrases (colour and shape) each
    fit exactly one object, its false twin (the relation swapped for its opposite, false of the
    scene), the two objects' indices and the word positions (``split_words``) of A's shape, B's
    shape and the relation word."""
    out = []
    for index, scene in enumerate(scenes):
        options = []
        for i, a in enumerate(scene.objects):
            for j, b in enumerate(scene.objects):
                if i == j:
                    continue
                pa, pb = describe(a, ("colour", "shape")), describe(b, ("colour", "shape"))
                if pa.select(scene) != [i] or pb.select(scene) != [j]:
                    continue
                for r in relations:
                    if relation_holds(r, a, b) and not relation_holds(OPPOSITE[r], a, b):
                        options.append((i, j, r, pa, pb))
        if not options:
            continue
        i, j, r, pa, pb = options[int(rng.integers(len(options)))]
        variant = int(rng.integers(2))
        true = Caption("relation", (pa, pb), r, template=0, variant=variant)
        false = Caption("relation", (pa, pb), OPPOSITE[r], template=0, variant=variant)
        words = split_words(true.text)
        shapes = [k for k, w in enumerate(words) if w in SHAPES]
        rel = next(k for k, w in enumerate(words) if w in ("left", "right", "above", "over", "below", "under",
                                                              "bigger", "larger", "smaller"))
        out.append({"scene": index, "a": i, "b": j, "relation": r, "text": true.text, "foil": false.text,
                    "a_word": shapes[0], "b_word": shapes[-1], "relation_word": rel})
    return out


def object_centres(scene, k) -> tuple[float, float]:
    """The centre of object ``k``'s box as fractions of the image (the 5-d location's frame)."""
    x1, y1, x2, y2 = scene.objects[k].box
    size = scene.image_size
    return (x1 + x2) / 2 / size, (y1 + y2) / 2 / size


def text_states(model, tokenizer, texts, word_index, regions, chunk: int = 250, attention: bool = False):
    """The last text state at word ``word_index[n]`` of each text (its first token) with ``regions``
    (a RegionBatch, row n for text n), the visual states ``(N, 1+R, Dv)``, and with ``attention``
    each co-attention layer's weights from that word over the region tokens, averaged over
    heads (a list of ``(N, 1+R)``; else None)."""
    from contextlib import ExitStack

    from minivl import nn
    from minivl.data.loader import pad_sequences
    from minivl.data.vilbert_tasks import encode_text
    from minivl.tensor import no_grad

    encoded = [encode_text(tokenizer, t) for t in texts]
    ids, mask = pad_sequences([e[0] for e in encoded], tokenizer.special_tokens["[PAD]"])
    at = np.asarray([e[1][k] for e, k in zip(encoded, word_index)])
    words, visual = [], []
    maps = [[] for _ in getattr(model, "co_blocks", [])] if attention else None
    with no_grad():
        for s in range(0, len(texts), chunk):
            part = slice(s, s + chunk)
            with ExitStack() as stack:
                recs = [stack.enter_context(nn.record(co.text)) for co in model.co_blocks] if attention else []
                streams = model.encode(ids[part], mask[part], regions.feats[part], regions.locs[part],
                                       regions.mask[part])
            text = streams.text.numpy()
            rows = np.arange(len(text))
            words.append(text[rows, at[part]])
            visual.append(streams.visual.numpy())
            for k, rec in enumerate(recs):
                (w,) = rec.weights  # (b, heads, T, 1+R)
                maps[k].append(w.numpy()[rows, :, at[part]].mean(1))  # (b, 1+R)
    return np.concatenate(words), np.concatenate(visual), maps and [np.concatenate(m) for m in maps]


def attention_on(maps, target, n_regions) -> list[dict]:
    """Per co-attention layer: the mean weight from the word on region token ``1 + target[n]``,
    how often that region gets the largest weight of all region tokens ([IMG] included), and
    the mean weight a uniform spread over the scene's ``1 + n_regions[n]`` tokens would give."""
    target, n_regions = np.asarray(target), np.asarray(n_regions)
    rows = np.arange(len(target))
    return [{"weight_on_referent": float(m[rows, 1 + target].mean()),
             "referent_gets_most": float((m.argmax(-1) == 1 + target).mean()),
             "uniform_weight": float((1 / (1 + n_regions)).mean())} for m in maps]


def paired_probe(true_states, foil_states, lam: float = 1e-2, seed: int = 0) -> float:
    """Accuracy of a ridge classifier telling a true caption's state (row n of ``true_states``)
    from its foil's (row n of ``foil_states``), fitted on the pairs of a random 3/4 of the items
    and scored on the other items' pairs. Split by item: split by row, the two rows of one item
    fall apart and the classifier scores below chance on words that say nothing of the image
    (what a word's rows left in the fitted part tilt it towards is the opposite of what is left
    to score)."""
    from minivl.metrics import ridge_predict

    n = len(true_states)
    if foil_states.shape != true_states.shape or n < 8:
        raise ValueError(f"need two (N, D) state arrays alike with N >= 8, got {true_states.shape}, "
                         f"{foil_states.shape}")
    idx = np.random.default_rng(seed).permutation(n)
    fit, test = idx[: n * 3 // 4], idx[n * 3 // 4:]
    x_fit = np.concatenate([true_states[fit], foil_states[fit]])
    y_fit = np.concatenate([np.ones(len(fit)), -np.ones(len(fit))])
    x_test = np.concatenate([true_states[test], foil_states[test]])
    y_test = np.concatenate([np.ones(len(test)), -np.ones(len(test))])
    return float(((ridge_predict(x_fit, y_fit, x_test, lam) > 0) == (y_test > 0)).mean())


def probe_model(model, tokenizer, scenes, regions, items, other) -> dict:
    """The probes of the module docstring for one model; ``other[n]``: the scene whose regions
    stand in for item n's in the control."""
    from minivl.recipes.vilbert_probe import ridge_probe

    rows = np.asarray([it["scene"] for it in items])
    own, swapped = regions[rows], regions[np.asarray(other)]
    ca = np.asarray([object_centres(scenes[it["scene"]], it["a"]) for it in items])  # (N, 2)
    cb = np.asarray([object_centres(scenes[it["scene"]], it["b"]) for it in items])
    out = {"items": len(items)}
    for name, reg in (("own_image", own), ("other_image", swapped)):
        a_state, visual, maps = text_states(model, tokenizer, [it["text"] for it in items],
                                            [it["a_word"] for it in items], reg, attention=name == "own_image")
        rel_state, _, _ = text_states(model, tokenizer, [it["text"] for it in items],
                                   [it["relation_word"] for it in items], reg)
        # the same position in the foil (same tokens up to the relation word, then the opposite)
        rel_foil, _, _ = text_states(model, tokenizer, [it["foil"] for it in items],
                                     [it["relation_word"] for it in items], reg)
        out[name] = {"a_word_x_r2": ridge_probe(a_state, ca[:, 0]), "a_word_y_r2": ridge_probe(a_state, ca[:, 1]),
                     "relation_word_dx_r2": ridge_probe(rel_state, ca[:, 0] - cb[:, 0]),
                     "relation_word_dy_r2": ridge_probe(rel_state, ca[:, 1] - cb[:, 1]),
                     "relation_word_true_accuracy": paired_probe(rel_state, rel_foil)}
        if name == "own_image":
            a_region = visual[np.arange(len(items)), 1 + np.asarray([it["a"] for it in items])]
            out["a_region_x_r2"] = ridge_probe(a_region, ca[:, 0])
            out["a_word_co_attention"] = attention_on(maps, [it["a"] for it in items],
                                                      [len(scenes[it["scene"]]) for it in items])
    return out


def main(argv=None) -> None:
    from threadpoolctl import threadpool_limits

    from minivl.data.world import ShapesWorld
    from minivl.recipes.vilbert import default_bert, default_regions
    from minivl.recipes.vilbert_probe import load_vilbert

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", nargs="+", required=True, help="folders with vilbert.safetensors")
    parser.add_argument("--scenes", type=int, default=3000, help="held-out scenes (those with a relation are probed)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    threadpool_limits(1)
    began, load_before = time.time(), os.getloadavg()
    _, tokenizer = default_bert()
    scenes = ShapesWorld(image_size=32, max_objects=3, seed=0).iid_scenes(args.scenes, "val",
                                                                          rng=np.random.default_rng(11))
    regions = default_regions()(scenes, np.random.default_rng(12))
    items = relation_items(scenes, np.random.default_rng(13))
    shift = np.random.default_rng(14).integers(1, len(scenes), len(items))
    other = (np.asarray([it["scene"] for it in items]) + shift) % len(scenes)  # never the own scene
    runs = {}
    for folder in args.checkpoint:
        model = load_vilbert(Path(folder) / "vilbert.safetensors").eval()
        runs[str(folder)] = probe_model(model, tokenizer, scenes, regions, items, other)
        print(folder, json.dumps(runs[str(folder)]), flush=True)
    Path(args.out).write_text(json.dumps({
        "command": "python -m minivl.recipes.vilbert_relation_probe " + " ".join(sys.argv[1:] if argv is None
                                                                                else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - began, 1),
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "scenes": args.scenes,
        "items": len(items), "relations": list(SPATIAL), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
