"""Why FOIL's size and relation swaps sat at 50% even on training items (lecture S10, issue 12).

Four checks, cheapest first, written to one JSON:

* ``labels``: every size and relation foil of the FOIL training split is false of
  its scene and its original true (``holds`` on the symbolic scene: an oracle
  that reads the ground-truth objects decides them all); sizes are absolute
  (an object's extent is 3/16 or 5/16 of the image, ``object_extent``), so the
  area of the 5-d location separates them with no overlap; region ``r`` is the
  scene's object ``r`` (boxes equal). ``examples``: 20 size and 20 relation
  items with their scenes' objects, to check by hand.
* ``embeddings``: cosine of the input embeddings of word pairs (small/large,
  left/right, red/blue, ...) in minivl's BERT and in the pretrained ViLBERTs.
* ``masked_words``: the pretrained model's masked-word accuracy on held-out
  captions, one word of each kind masked at a time, reading the caption's own
  image or another scene's: does pretraining tie the word to the image?
* ``fit``: FOIL fine-tuned on size swaps alone and on relation swaps alone
  (``steps`` steps), pretrained or not, with the fused ``linear`` head or the
  ``token`` head (``minivl/recipes/vilbert_transfer.py``): accuracy on the
  first 600 training items and on the test items of that kind.

    python -m minivl.recipes.vilbert_foil_probe --out results/vilbert_foil_probe.json

(that file, of the models pretrained with every word masked at 15%, is kept as
``results/vilbert_foil_probe_mask15.json``). ``--mask-rates`` names the pretraining
(``pretrain_vilbert``'s ``word_mask_rates``), ``--masked-words-only`` keeps the
embeddings and masked words and skips the labels and fits:

    python -m minivl.recipes.vilbert_foil_probe --seeds 0 --mask-rates size=0.5 relation=0.5 \
        --masked-words-only --out results/vilbert_foil_probe_mask50_s0.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np

from minivl.data.captions import holds
from minivl.data.shapes import object_extent
from minivl.recipes.vilbert import WORD_KINDS
from minivl.tensor import no_grad

WORD_PAIRS = (("small", "large"), ("little", "big"), ("left", "right"), ("above", "below"),
              ("over", "under"), ("bigger", "smaller"), ("red", "blue"), ("green", "yellow"),
              ("circle", "square"), ("triangle", "ring"))


def subset(split, index):
    """Items ``index`` of a TaskSplit (same regions and scenes)."""
    index = np.asarray(index)
    return replace(split, ids=split.ids[index], text_mask=split.text_mask[index], images=split.images[index],
                   targets={k: v[index] for k, v in split.targets.items()}, groups=split.groups[index],
                   texts=[split.texts[i] for i in index])


def check_labels(data: dict) -> dict:
    """The foils against their scenes (see the module docstring): the FOIL generator's draws
    remade (``sample_caption``, then every size and relation swap ``foil_candidates`` keeps),
    each checked with ``holds`` on the ground-truth objects."""
    from minivl.data.captions import sample_caption
    from minivl.data.foil import foil_candidates

    split, rng = data["train"], np.random.default_rng(0)
    checked = {"size": [], "relation": []}
    examples = {"size": [], "relation": []}
    for scene in split.scenes:
        caption = sample_caption(scene, rng, kinds=("list", "relation"))
        for kind, foils in foil_candidates(caption, scene).items():
            if kind not in checked:
                continue
            for foiled in foils:
                checked[kind].append(holds(caption, scene) and not holds(foiled, scene))
                if len(examples[kind]) < 20:
                    examples[kind].append({"original": caption.text, "foil": foiled.text,
                                           "objects": [f"{o.name} at {o.box}" for o in scene.objects]})
    out = {f"{k}_swaps_checked": len(v) for k, v in checked.items()}
    out |= {f"{k}_foil_false_and_original_true": float(np.mean(v)) for k, v in checked.items()}
    r = split.regions
    sizes = np.array([o.size for s in split.scenes for o in s.objects])
    area = np.concatenate([r.locs[i, 1:1 + len(s), 4] for i, s in enumerate(split.scenes)])
    image = split.scenes[0].image_size
    out["size_is_absolute"] = {"small_area": object_extent(0, image) ** 2 / image ** 2,
                               "large_area": object_extent(1, image) ** 2 / image ** 2,
                               "largest_small_region_area": float(area[sizes == 0].max()),
                               "smallest_large_region_area": float(area[sizes == 1].min())}
    out["region_boxes_are_scene_boxes"] = bool(all(np.array_equal(r.boxes[i, :len(s)], s.boxes)
                                                   for i, s in enumerate(split.scenes)))
    return {**out, "examples": examples}


def embedding_cosines(models: dict, tokenizer) -> dict:
    out = {}
    for name, weight in models.items():
        w = np.asarray(weight)
        row = {}
        for a, b in WORD_PAIRS:
            x, y = w[tokenizer.encode(" " + a)[0]], w[tokenizer.encode(" " + b)[0]]
            row[f"{a}/{b}"] = float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
        out[name] = row
    return out


def masked_word_accuracy(model, tokenizer, n_scenes: int = 400) -> dict:
    """Masked-word accuracy per word kind on held-out captions, own image vs another's."""
    from minivl.data.loader import pad_sequences
    from minivl.data.world import ShapesWorld
    from minivl.recipes.vilbert import captioned_scenes, default_regions

    kinds = {k: {tokenizer.encode(" " + w)[0] for w in ws} for k, ws in WORD_KINDS.items()}
    world = ShapesWorld(image_size=32, max_objects=3, seed=9)
    data = captioned_scenes(world.iid_scenes(n_scenes, "val", rng=np.random.default_rng(7)), default_regions(),
                            tokenizer, np.random.default_rng(5))
    mask_id = tokenizer.special_tokens["[MASK]"]
    rows, where = [], []
    for i, captions in enumerate(data.caption_ids):
        for ids in captions:
            for p, t in enumerate(ids):
                for kind, members in kinds.items():
                    if int(t) in members:
                        x = ids.copy()
                        x[p] = mask_id
                        rows.append(x)
                        where.append((i, p, int(t), kind))
    ids, mask = pad_sequences(rows, tokenizer.special_tokens["[PAD]"])
    scene, pos, true, kind = (np.array(c) for c in zip(*where))
    r, out = data.regions, {}
    for name, images in (("own_image", scene), ("other_image", np.roll(scene, 97))):
        preds = []
        with no_grad():
            for s in range(0, len(ids), 250):
                sl = slice(s, s + 250)
                streams = model.eval().encode(ids[sl], mask[sl], r.feats[images[sl]], r.locs[images[sl]],
                                              r.mask[images[sl]])
                logits = model.mlm_logits(streams).numpy()
                preds.append(logits[np.arange(len(logits)), pos[sl]].argmax(-1))
        right = np.concatenate(preds) == true
        out[name] = {k: float(right[kind == k].mean()) for k in WORD_KINDS}
    out["n"] = {k: int((kind == k).sum()) for k in WORD_KINDS}
    return out


def run(steps: int = 600, seeds=(0, 1), pretrain_steps: int | None = None, log=print, word_mask_rates=None,
        masked_words_only: bool = False) -> dict:
    """The four checks on the pretrained ViLBERTs of ``seeds`` (pretrained with
    ``word_mask_rates``, ``pretrain_vilbert``'s); ``masked_words_only``: the embeddings and
    masked words alone (no labels, no fits)."""
    from minivl.checkpoint import cache_dir
    from minivl.data.regions import RegionEncoder
    from minivl.data.vilbert_tasks import make_task, scene_parts
    from minivl.data.world import ShapesWorld
    from minivl.recipes.vilbert import PRETRAIN_STEPS, default_bert
    from minivl.recipes.vilbert_table import base_config, fresh_encoder, pretrain_recipe, pretrained_encoder
    from minivl.recipes.vilbert_transfer import finetune

    pretrain_steps = PRETRAIN_STEPS if pretrain_steps is None else pretrain_steps
    begin = time.perf_counter()
    bert, tokenizer = default_bert()
    regions = RegionEncoder.load_default()
    out = {"load_average_start": os.getloadavg(), "pretrain_recipe": pretrain_recipe(word_mask_rates)}
    if not masked_words_only:
        world = ShapesWorld(image_size=regions.image_size, max_objects=3, seed=0)
        parts = scene_parts(world, regions, (2000, 300, 1000), seed=0)  # the table's scenes
        data = make_task("foil", world, tokenizer, regions, seed=0, max_len=64, parts=parts)
        out["labels"] = check_labels(data)
    pretrained = {s: pretrained_encoder("vilbert", s, pretrain_steps, cache_dir(), False, regions, word_mask_rates)
                  for s in seeds}
    out["embeddings"] = embedding_cosines(
        {"bert": bert.embeddings.token.weight.data,
         **{f"vilbert_seed{s}": m.text_embeddings.token.weight.data for s, m in pretrained.items()}}, tokenizer)
    out["masked_words"] = {f"vilbert_seed{s}": masked_word_accuracy(m, tokenizer) for s, m in pretrained.items()}
    log(json.dumps({k: out[k] for k in ("embeddings", "masked_words")}, indent=1))
    if masked_words_only:
        out["seconds"] = time.perf_counter() - begin
        out["load_average_end"] = os.getloadavg()
        return out
    out["fit"] = []
    config = base_config(bert, tokenizer, regions)
    for kind in ("size", "relation"):
        split = {p: subset(s, np.flatnonzero(s.groups == kind)) for p, s in data.items()}
        for pretrain in (True, False):
            for head in ("linear", "token"):
                encoder = pretrained_encoder("vilbert", 0, pretrain_steps, cache_dir(), False, regions,
                                             word_mask_rates) if pretrain \
                    else fresh_encoder("vilbert", config, bert)
                m = finetune("foil", encoder, split, steps=steps, batch_size=32, lr=1e-3, head_lr=3e-3, seed=0,
                             progress=False, train_scores=600, foil_head=head)["metrics"]
                row = {"kind": kind, "pretrained": pretrain, "foil_head": head, "steps": steps,
                       "train_items": len(split["train"]), "train_accuracy": m["train"]["accuracy"],
                       "test_accuracy": m["test"]["accuracy"], "test_word": m["test"]["word"],
                       "train_seconds": m["train_seconds"], "load_average": os.getloadavg()}
                out["fit"].append(row)
                log(row)
    out["seconds"] = time.perf_counter() - begin
    out["load_average_end"] = os.getloadavg()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/vilbert_foil_probe.json")
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps of each fit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--mask-rates", nargs="*", metavar="KIND=RATE",
                        help="the pretraining's masking rate per word kind (default: WORD_MASK_RATES)")
    parser.add_argument("--masked-words-only", action="store_true", help="embeddings and masked words only")
    args = parser.parse_args(argv)
    from minivl.recipes.vilbert import parse_mask_rates

    rates = None if args.mask_rates is None else parse_mask_rates(args.mask_rates)
    words = sys.argv[1:] if argv is None else argv
    result = {"command": "python -m minivl.recipes.vilbert_foil_probe " + " ".join(words),
              "machine": platform.machine(), **run(args.steps, tuple(args.seeds), word_mask_rates=rates,
                                                 masked_words_only=args.masked_words_only)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
