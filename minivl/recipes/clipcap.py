"""ClipCap on the shapes world (lecture S18): minivl's trained CLIP image
embedding -> a mapping network -> a prefix for a small GPT pretrained on the
captions; greedy and beam-search captions, scored by exact attribute match
and BLEU-4, with the GPT frozen or fine-tuned.

The pictures hold one object in one cell of the 3 x 3 grid CLIP was trained
on; each has four reference captions ("a small red circle.", "the image shows
a small red circle.", ...). A caption matches when the (size, colour, shape)
it names is the object's. ``python -m minivl.recipes.clipcap --out
results/clipcap.json`` writes the table.
"""

from __future__ import annotations

import re
import time

import numpy as np

from minivl.data.corpus import TextCorpus
from minivl.data.render import render
from minivl.data.shapes import COLOURS, SHAPES, SIZES, sample_scenes
from minivl.metrics import bleu, embed_images
from minivl.models.clipcap import ClipCap
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tokenizers import train_bpe
from minivl.train import train

TEMPLATES = ("a {}.", "the image shows a {}.", "a picture showing a {}.", "a {} on a black background.")
SPECIAL = ("<|endoftext|>", "[PAD]")
_NAMED = re.compile(r"\b(small|large) (\w+) (\w+)\b")


def phrase(scene) -> str:
    o = scene.objects[0]
    return f"{SIZES[o.size]} {COLOURS[o.colour]} {SHAPES[o.shape]}"


def named(caption: str):
    """The (size, colour, shape) a caption names, or None."""
    m = _NAMED.search(caption)
    return m.groups() if m else None


def make_data(n, seed):
    scenes = sample_scenes(n, np.random.default_rng([seed, 18]), image_size=48, max_objects=1,
                           split="train", grid=3)
    return scenes, render(scenes)


def batches(emb, phrases, tokenizer, batch_size, seed, prefix_len):
    eot, pad = tokenizer.special_tokens["<|endoftext|>"], tokenizer.special_tokens["[PAD]"]
    step = 0
    while True:
        step += 1
        rng = np.random.default_rng([seed, step])
        pick = rng.choice(len(phrases), batch_size, replace=False)
        seqs = [[eot] + tokenizer.encode(TEMPLATES[rng.integers(len(TEMPLATES))].format(phrases[i])) + [eot]
                for i in pick]
        T = max(map(len, seqs))
        ids = np.full((batch_size, T), pad, np.int64)
        labels = np.full((batch_size, T), -100, np.int64)
        for r, s in enumerate(seqs):
            ids[r, :len(s)] = s
            labels[r, 1:len(s)] = s[1:]  # position t predicts ids[t]; the start token is given
        yield emb[pick], ids, labels


def run_clipcap(clip, n_train=2000, n_test=200, lm_steps=150, steps=300, batch_size=32, seed=0,
                beams=3, progress=True) -> dict:
    """Frozen vs fine-tuned GPT: exact attribute match and BLEU-4, greedy and beam search."""
    from minivl.recipes.gpt import train_gpt

    began = time.perf_counter()
    manual_seed(seed)
    train_scenes, train_images = make_data(n_train, seed)
    test_scenes, test_images = make_data(n_test, seed + 1000)
    train_phrases = [phrase(s) for s in train_scenes]
    docs = [(t.format(p), "") for p in train_phrases[:500] for t in TEMPLATES]
    tokenizer = train_bpe("\n".join(d for d, _ in docs), 300, special_tokens=SPECIAL)
    gpt = train_gpt(corpus=TextCorpus(docs[40:], docs[:40], tokenizer), steps=lm_steps, batch_size=32,
                    block_size=24, seed=seed, progress=progress, prompts=(), eval_every=lm_steps)["model"]
    from minivl.models.vision import preprocess

    emb_train = embed_images(clip, preprocess(train_images))  # (n, E), CLIP frozen
    emb_test = embed_images(clip, preprocess(test_images))
    eot = tokenizer.special_tokens["<|endoftext|>"]
    refs = [[tokenizer.encode(t.format(phrase(s))) for t in TEMPLATES] for s in test_scenes]
    truth = [tuple(phrase(s).split()) for s in test_scenes]
    rows = {}
    for name, tune in (("frozen_gpt", False), ("finetuned_gpt", True)):
        manual_seed(seed)
        model = ClipCap(embed_dim=emb_train.shape[1], vocab_size=tokenizer.vocab_size,
                        max_len=gpt.config.max_len, dim=gpt.config.dim, depth=gpt.config.depth,
                        num_heads=gpt.config.num_heads)
        model.lm.load_state_dict({k: np.array(v) for k, v in gpt.state_dict().items()})
        model.lm.requires_grad_(tune)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = AdamW(params, lr=2e-3, weight_decay=0.0)
        h = train(model, lambda m, b: m.loss(*b),
                  batches(emb_train, train_phrases, tokenizer, batch_size, seed, model.config.prefix_len),
                  opt, steps, WarmupCosineLR(opt, steps, 20, 2e-4), progress=progress, desc=f"clipcap {name}")
        model.eval()
        row = {"trained_parameters": int(sum(p.size for p in params)), "final_loss": float(np.mean(h.loss[-20:])),
               "train_seconds": h.seconds}
        greedy = model.greedy(emb_test, eot, eot)
        beam = [model.beam_search(e, eot, eot, beams) for e in emb_test]
        for decode, caps in (("greedy", greedy), (f"beam{beams}", beam)):
            texts = [tokenizer.decode(c) for c in caps]
            row[f"{decode}_attribute_match"] = float(np.mean([named(t) == g for t, g in zip(texts, truth)]))
            row[f"{decode}_bleu4"] = bleu(caps, refs)
            row[f"{decode}_examples"] = texts[:3]
        rows[name] = row
    return {"rows": rows, "seed": seed, "steps": steps, "lm_steps": lm_steps, "batch_size": batch_size,
            "test_images": n_test, "reference_captions": list(TEMPLATES),
            "truth_examples": [" ".join(t) for t in truth[:3]], "total_seconds": time.perf_counter() - began}


if __name__ == "__main__":
    import argparse
    import os

    from minivl.commands._options import write_results
    from minivl.recipes.llava import clip_tower

    p = argparse.ArgumentParser(description="ClipCap on the shapes world (S18)")
    p.add_argument("--out", default="results/clipcap.json")
    p.add_argument("--clip", default=None,
                   help="a CLIP run's folder; default: LLaVA's eye cached under $MINIVL_CACHE")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lm-steps", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    load = os.getloadavg()
    r = run_clipcap(clip_tower(args.clip, wait=3600), steps=args.steps, lm_steps=args.lm_steps, seed=args.seed)
    r["load_average_at_start"] = [round(x, 2) for x in load]
    for name, row in r["rows"].items():
        print(name, {k: v for k, v in row.items() if not k.endswith("examples")})
    print(f"results: {write_results(args.out, 'python -m minivl.recipes.clipcap', vars(args), r)}")
