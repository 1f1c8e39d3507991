"""How the DALL-E prior is trained, sampled, reranked and judged (stage 2;
lecture S22, S24, S26-S28; Ramesh et al. 2021).

* tokens: captions from ``minivl.data.dalle_pairs`` through a byte-level BPE
  learned on the training captions, padded by ``DALLE.pad_text``; image codes
  are the argmax codes of the frozen dVAE (``minivl.recipes.dvae.default_dvae``);
* ``train_prior``: AdamW + warm-up/cosine on the 1/8 text + 7/8 image loss,
  teacher-forced validation losses on the held-out sets;
* ``generate_codes``: temperature / top-k sampling with the key/value cache,
  decoded by the dVAE decoder (``decode``);
* classifier-free guidance, a later addition (Make-A-Scene, Parti; not DALL-E
  1): ``train_prior(caption_dropout=p)`` trains on captions replaced by the
  empty caption with probability p, and ``generate_codes(guidance=s)`` samples
  from ``u + s * (c - u)`` (``minivl.models.dalle.DALLE.generate``); s = 1 is
  the paper's sampling;
* ``rerank``: a CLIP trained on the same pairs at the same 32 px
  (``train_reranker`` reuses ``minivl.recipes.clip``'s batches, loss and
  optimizer; ``default_reranker`` caches it) orders each caption's candidates;
* ``evaluate``: the judge (``minivl.recipes.judge``) reads every generated
  image; a generation is correct when what it reads is exactly what the caption
  says. Reported first sample vs CLIP-best of 16, and a shuffled-caption
  baseline (each image judged against another caption: what ignoring the text
  scores).

``python -m minivl.recipes.dalle --out results/dalle.json --seeds 0 1`` writes
the figures of the notes (and the mask experiment, and PNG grids beside it).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from minivl.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from minivl.data.dalle_pairs import IMAGE_SIZE, make_dalle_data
from minivl.models.clip import CLIP
from minivl.models.dalle import DALLE
from minivl.models.vision import preprocess
from minivl.optim import AdamW, WarmupCosineLR
from minivl.random import manual_seed
from minivl.tensor import no_grad
from minivl.tokenizers import BPETokenizer, train_bpe
from minivl.tokenizers.clip import CLIPTokenizer
from minivl.train import History, run_eval, train

CHECKPOINT = "prior.safetensors"
# On the 8 x 8 codes of the earlier dVAE: 3000 steps (519 s on two shared cores, load 3.0:
# results/dalle_8x8.json); 800 steps judged about as well (results/dalle_800steps.json). The default
# dVAE now writes a 16 x 16 grid (256 image tokens, not 64): a training step costs about 4x (one
# forward + backward at batch 32: results/dalle_mask_timing.json). 600 steps (results/dalle_600steps.json)
# left shapes ragged (held-out image loss 0.90 nats per code); 3000 steps halve that loss (0.43) and
# draw whole objects (results/dalle_flat_3000steps.json); 2312 / 2095 s at load 3 on two shared cores (seeds 0 / 1):
# over the 15-minute budget for the prior.
# Image tokens now get axial row + column position embeddings (``image_positions="axial"``): at 1000
# steps, seed 0, held-out image loss 0.694 against 0.746 with the flat 1-D table, and the
# shape / colour word-swap gaps double (results/dalle_axial_1000steps.json, dalle_flat_1000steps.json).
# 1500 steps to stay inside the 15-minute budget (results/dalle.json).
# Batches of 16 for 3000 steps (the same pairs seen) make the prior read shape words sooner on
# context-free exact 4 x 4 tokens (one-object probe: shape right 0.56 / 0.61 against 0.38 / 0.54;
# results/dalle_diag_bs16.json, results/dalle_exact4_1500x32.json) but not on this dVAE's codes
# (probe 0.18, chance 0.17; shape-swap gap 0.3 nats per image; first samples 0.02; 1089 s at load 3.0;
# results/dalle_bs16.json, seed 0): batch 32, 1500 steps kept.
# caption_dropout: the fraction of training captions replaced by the empty caption, for
# classifier-free guidance (a later addition, not DALL-E 1; 0 = the paper's training).
DEFAULTS = dict(steps=1500, batch_size=32, lr=2e-3, warmup=100, dim=64, depth=4, heads=4,
                attention="full", n_train=20000, text_len=16, vocab_size=512, image_positions="axial",
                caption_dropout=0.0)
# The guidance scale s of sampling (1 = the paper's sampling; see generate_codes).
GUIDANCE = 1.0
# The reranker CLIP: 5000 steps. At 500 it was blind to shape words: it scored the true caption of
# a real held-out image above the same caption with its shapes swapped hardly more often than a
# coin, so it could not pick a right shape out of 16 candidates (caption_preference;
# python -m minivl.recipes.dalle --reranker-preference 500 5000: results/dalle_reranker_preference.json).
RERANKER = dict(steps=5000, batch_size=64, lr=2e-3, dim=64, depth=2, heads=4, embed_dim=64,
                patch_size=16, vocab_size=512)


# --------------------------------------------------------------------------- tokens


def caption_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def check_words(captions, known) -> None:
    """ValueError naming every word of ``captions`` the prior never read in training."""
    unknown = sorted({w for c in captions for w in caption_words(c) if w not in known})
    if unknown:
        raise ValueError(f"unknown word(s) {', '.join(map(repr, unknown))}: this prior was trained "
                         f"on the words {', '.join(sorted(known))}")


def text_ids(model: DALLE, bpe: BPETokenizer, captions) -> np.ndarray:
    """Captions -> ``(N, L)`` padded ids; a ValueError for a caption longer than ``text_len``."""
    tokens = [bpe.encode(c) for c in captions]
    long = [c for c, t in zip(captions, tokens) if len(t) > model.config.text_len]
    if long:
        raise ValueError(f"caption {long[0]!r} is {len(bpe.encode(long[0]))} tokens, longer than the "
                         f"prior's text_len={model.config.text_len}")
    return model.pad_text(tokens)


def encode_images(dvae, images, batch_size=250) -> np.ndarray:
    from minivl.recipes.dvae import encode_all

    return encode_all(dvae, images, batch_size)


def check_pair(model: DALLE, dvae) -> None:
    """ValueError unless the prior reads the codes this dVAE writes."""
    c = model.config
    if (c.grid_h, c.grid_w) != tuple(dvae.grid) or c.image_vocab != dvae.K:
        raise ValueError(f"the prior was trained on a {c.grid_h}x{c.grid_w} grid of {c.image_vocab} codes, "
                         f"the dVAE writes a {dvae.grid[0]}x{dvae.grid[1]} grid of {dvae.K}: "
                         "use the dVAE the prior was trained with")


class PatchCodebook:
    """A stand-in image tokenizer with the dVAE's interface (``encode_codes``,
    ``decode_codes``, ``K``, ``grid``): k-means over ``patch x patch`` pixel
    patches (a VQ codebook fitted without gradients). Not DALL-E's stage 1;
    used where no trained dVAE is at hand, to exercise stage 2 end to end."""

    def __init__(self, images, K=512, patch=4, iterations=8, seed=0):
        from minivl.models.dvae import pixels

        x = pixels(images)  # (N, 3, S, S) in [0, 1]
        self.patch, self.size = patch, x.shape[-1]
        self.grid = (self.size // patch, self.size // patch)
        flat = self._patches(x)  # (N * h * w, 3 p p)
        rng = np.random.default_rng(seed)
        self.centroids = flat[rng.choice(len(flat), K, replace=False)].copy()  # (K, 3 p p)
        for _ in range(iterations):
            nearest = self._nearest(flat)
            for k in range(K):
                members = flat[nearest == k]
                self.centroids[k] = members.mean(0) if len(members) else flat[rng.integers(len(flat))]
        self.K = K

    def _patches(self, x):
        B, C, S, _ = x.shape
        h, p = S // self.patch, self.patch
        return x.reshape(B, C, h, p, h, p).transpose(0, 2, 4, 1, 3, 5).reshape(B * h * h, C * p * p)

    def _nearest(self, flat):
        d = (flat ** 2).sum(1)[:, None] - 2 * flat @ self.centroids.T + (self.centroids ** 2).sum(1)[None]
        return d.argmin(1)

    def encode_codes(self, images) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        return self._nearest(self._patches(x)).reshape(len(x), *self.grid)

    def decode_codes(self, codes) -> np.ndarray:
        codes = np.asarray(codes)
        B, h, p = len(codes), self.grid[0], self.patch
        x = self.centroids[codes.reshape(-1)].reshape(B, h, h, 3, p, p)
        return x.transpose(0, 3, 1, 4, 2, 5).reshape(B, 3, self.size, self.size)


class ExactPatches(PatchCodebook):
    """A diagnostic image tokenizer, not DALL-E's stage 1: code k is the k-th most frequent
    distinct ``patch x patch`` pixel patch of ``images`` (every one gets its own code), so
    encoding the training renders and decoding is exact, and each code depends on its own
    patch alone. A patch never seen (a held-out colour-shape pair's) takes the code of the
    nearest seen patch. It asks how well the prior does with codes that carry no context
    (the default dVAE's do: ``code_entropy``) at a given grid, with a perfect decoder."""

    def __init__(self, images, patch=2):  # noqa: D107 (no k-means: the patches themselves)
        from minivl.models.dvae import pixels

        x = pixels(images)
        self.patch, self.size = patch, x.shape[-1]
        self.grid = (self.size // patch, self.size // patch)
        unique, counts = np.unique(self._patches(x), axis=0, return_counts=True)
        self.centroids = unique[np.argsort(-counts, kind="stable")].astype(np.float32)  # (K, 3 p p)
        self.K = len(unique)


def tokenizer(name, seed=0, progress=True, n_train=None):
    """The image tokenizer a run names: a dVAE checkpoint path, None (the cached default
    dVAE), ``"kmeans"`` (``PatchCodebook``) or ``"exact2"`` / ``"exact4"`` (``ExactPatches`` of
    2 x 2 or 4 x 4 pixels), the last two fitted on the seed's ``n_train`` training renders
    (default ``DEFAULTS["n_train"]``)."""
    from minivl.recipes.dvae import default_dvae, load_dvae

    if name == "kmeans":
        return PatchCodebook(make_dalle_data(3000, seed)[0].images, seed=seed)
    if name in ("exact2", "exact4"):
        return ExactPatches(make_dalle_data(n_train or DEFAULTS["n_train"], seed)[0].images, int(name[-1]))
    return load_dvae(name) if name else default_dvae(0, progress)


def code_entropy(codes, images, patch) -> dict:
    """How much of a tokenizer's codes is context: over code grids ``(N, h, w)`` of ``images``
    (uint8 ``(N, S, S, 3)``, ``patch = S / h`` pixels per code), the entropy of the codes, of
    the pixel patches under them, and of each given the other (nats per code; plug-in
    estimates). ``code_given_patch`` near 0: a code says what its own patch shows and nothing
    more; large: the encoder spends codes on context (neighbours, position). Also the same on
    background patches (all black), and of background codes given their grid position."""
    codes = np.asarray(codes).reshape(len(codes), -1)  # (N, n)
    N, n = codes.shape
    g = int(round(np.sqrt(n)))
    p = np.asarray(images).reshape(N, g, patch, g, patch, -1).transpose(0, 1, 3, 2, 4, 5).reshape(N * n, -1)
    key = np.unique(p, axis=0, return_inverse=True)[1].reshape(-1)
    c = codes.reshape(-1).astype(np.int64)
    position = np.tile(np.arange(n), N)

    def entropy(x):
        _, counts = np.unique(x, return_counts=True)
        q = counts / counts.sum()
        return float(-(q * np.log(q)).sum())

    def conditional(a, b):  # H(a | b) = H(a, b) - H(b)
        return entropy(a * (int(b.max()) + 1) + b) - entropy(b)

    background = p.max(axis=1) == 0
    return {"codes": entropy(c), "patches": entropy(key), "code_given_patch": conditional(c, key),
            "patch_given_code": conditional(key, c), "distinct_codes": int(len(np.unique(c))),
            "distinct_patches": int(key.max() + 1), "background_fraction": float(background.mean()),
            "background_codes": int(len(np.unique(c[background]))),
            "background_code_entropy": entropy(c[background]),
            "background_code_given_position": conditional(c[background], position[background])}


# --------------------------------------------------------------------------- training


def batches(streams, batch_size, seed, start=0):
    """Random rows of ``streams (N, L + 1 + n)`` forever; batch ``s`` depends only on ``(seed, s)``."""
    step = start
    while True:
        step += 1
        yield streams[np.random.default_rng([seed, step]).choice(len(streams), batch_size, replace=False)]


def drop_captions(model, batches, p, seed):
    """``batches`` with each row's caption replaced by the empty caption with probability ``p``
    (``DALLE.drop_captions``); the draw of batch ``s`` depends only on ``(seed, s)``. ``p = 0``
    passes the batches through untouched. Classifier-free guidance's training (not DALL-E 1)."""
    if p == 0:
        yield from batches
        return
    for step, batch in enumerate(batches, 1):
        yield model.drop_captions(batch, p, np.random.default_rng([seed, step, 1]))


def make_optimizer(model, lr, steps, warmup, weight_decay=0.01):
    """AdamW (decay on matrices only) with warm-up and cosine decay to lr / 20."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = AdamW(groups, lr=lr, betas=(0.9, 0.98))
    return optimizer, WarmupCosineLR(optimizer, steps, min(warmup, steps - 1), min_lr=lr / 20)


def validation(model, streams, batch_size=200) -> dict:
    """Teacher-forced text and image cross-entropy on ``streams``."""
    text, image = [], []
    with no_grad():
        for i in range(0, len(streams), batch_size):
            t, m = model.losses(streams[i:i + batch_size])
            text.append(t.item() * len(streams[i:i + batch_size]))
            image.append(m.item() * len(streams[i:i + batch_size]))
    return {"text_loss": sum(text) / len(streams), "image_loss": sum(image) / len(streams)}


def train_prior(dvae=None, steps=None, batch_size=None, lr=None, warmup=None, dim=None, depth=None,
                heads=None, attention=None, n_train=None, text_len=None, vocab_size=None,
                image_positions=None, caption_dropout=None, eval_every=250, seed=0, progress=True, out=None,
                data=None) -> dict:
    """Train a DALL-E prior on the codes of ``dvae`` (default: the cached default dVAE).

    Every argument left None takes ``DEFAULTS``. Returns ``{"model", "bpe",
    "words", "dvae", "history", "metrics", "data"}``; ``data`` is ``(train,
    evals, streams)`` and may be passed in to reuse it. With ``out`` the prior
    goes to ``out/prior.safetensors`` (and its BPE beside it). ``caption_dropout``: the
    probability that a training caption is replaced by the empty caption (for guidance).
    """
    o = {k: v if v is not None else DEFAULTS[k] for k, v in dict(
        steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, dim=dim, depth=depth, heads=heads,
        attention=attention, n_train=n_train, text_len=text_len, vocab_size=vocab_size,
        image_positions=image_positions, caption_dropout=caption_dropout).items()}
    began = time.perf_counter()
    manual_seed(seed)
    if dvae is None:
        from minivl.recipes.dvae import default_dvae

        dvae = default_dvae(seed=seed, progress=progress)
    if data is None:
        train_pairs, evals = make_dalle_data(o["n_train"], seed)
        bpe = train_bpe("\n".join(train_pairs.captions), o["vocab_size"], progress=False)
        codes = encode_images(dvae, train_pairs.images)  # (N, h, w)
        eval_codes = {k: encode_images(dvae, v.images) for k, v in evals.items()}
        data = (train_pairs, evals, bpe, codes, eval_codes)
    train_pairs, evals, bpe, codes, eval_codes = data
    words = sorted({w for c in train_pairs.captions for w in caption_words(c)})
    model = DALLE(text_vocab=bpe.vocab_size, text_len=o["text_len"], image_vocab=dvae.K,
                  grid_h=dvae.grid[0], grid_w=dvae.grid[1], dim=o["dim"], depth=o["depth"],
                  num_heads=o["heads"], attention=o["attention"], image_positions=o["image_positions"])
    streams = model.stream(text_ids(model, bpe, train_pairs.captions), codes)
    val = {k: model.stream(text_ids(model, bpe, v.captions), eval_codes[k]) for k, v in evals.items()}
    data_seconds = time.perf_counter() - began

    def evaluate():
        return {f"{k}_{name}": v for k, s in val.items() for name, v in validation(model, s).items()}

    optimizer, scheduler = make_optimizer(model, o["lr"], o["steps"], o["warmup"])
    start = {"step": 0, **run_eval(model, evaluate)}
    stream_batches = drop_captions(model, batches(streams, o["batch_size"], seed), o["caption_dropout"], seed)
    history: History = train(model, lambda m, b: m.loss(b), stream_batches,
                             optimizer, o["steps"], scheduler, clip_norm=1.0, evaluate=evaluate,
                             eval_every=eval_every, progress=progress, desc=f"dalle prior ({o['attention']})")
    history.after(0, start)
    final = history.last_eval() if history.evals[-1]["step"] == o["steps"] else \
        {"step": o["steps"], **run_eval(model, evaluate)}
    metrics = {**final, **o, "seed": seed, "parameters": model.num_parameters(),
               "train_seconds": history.seconds, "data_seconds": data_seconds,
               "train_pairs": len(train_pairs), "text_vocab": bpe.vocab_size}
    if out is not None:
        save_prior(model, bpe, words, Path(out) / CHECKPOINT, **{k: v for k, v in metrics.items()
                                                                  if isinstance(v, (int, float, str))})
    return {"model": model, "bpe": bpe, "words": words, "dvae": dvae, "history": history,
            "metrics": metrics, "data": data}


def save_prior(model, bpe, words, path, **metadata):
    path = Path(path)
    save_checkpoint(model, path, words=json.dumps(words), **metadata)
    bpe.save(path.with_name(path.stem + ".tokenizer.json"))


def load_prior(path):
    """``(model, bpe, words)`` of a prior saved by ``train_prior(out=...)``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no prior at {path}: train one with 'minivl dalle train-prior --out {path.parent}'")
    model = load_checkpoint(DALLE, path).eval()
    bpe = BPETokenizer.load(path.with_name(path.stem + ".tokenizer.json"))
    if bpe.vocab_size != model.config.text_vocab:
        raise ValueError(f"{path}: its tokenizer has {bpe.vocab_size} ids, the prior reads {model.config.text_vocab}")
    return model, bpe, set(json.loads(checkpoint_metadata(path)["words"]))


# --------------------------------------------------------------------------- sampling


def generate_codes(model, bpe, captions, n=1, temperature=1.0, top_k=None, seed=0, batch_size=512,
                   progress=False, words=None, guidance=1.0) -> np.ndarray:
    """``n`` sampled code grids per caption: ``(len(captions), n, h, w)``. ``guidance``: the
    classifier-free guidance scale (1: the paper's sampling; a prior trained with
    ``caption_dropout`` is needed for any other)."""
    if words is not None:
        check_words(captions, words)
    text = np.repeat(text_ids(model, bpe, captions), n, axis=0)  # (C * n, L), candidates together
    generator = np.random.default_rng(seed)
    out = [model.generate(text[i:i + batch_size], temperature, top_k, generator=generator, guidance=guidance)
           for i in tqdm(range(0, len(text), batch_size), desc="sampling", disable=not progress, leave=False)]
    return np.concatenate(out).reshape(len(captions), n, model.config.grid_h, model.config.grid_w)


def decode(dvae, codes, batch_size=250) -> np.ndarray:
    """Code grids ``(..., h, w)`` -> uint8 images ``(..., S, S, 3)`` through the dVAE decoder."""
    from minivl.models.dvae import to_uint8

    flat = codes.reshape(-1, *codes.shape[-2:])
    images = np.concatenate([to_uint8(dvae.decode_codes(flat[i:i + batch_size]))
                             for i in range(0, len(flat), batch_size)])
    return images.reshape(*codes.shape[:-2], *images.shape[1:])


# --------------------------------------------------------------------------- CLIP reranking


def train_reranker(pairs, seed=0, progress=True, **overrides) -> tuple[CLIP, CLIPTokenizer, dict]:
    """A CLIP trained on the prior's own pairs at its image size, with the CLIP recipe's
    batches, loss and optimizer (``minivl.recipes.clip``); settings ``RERANKER``."""
    from minivl.recipes import clip as recipe

    o = {**RERANKER, **overrides}
    manual_seed(seed)
    tokenizer = CLIPTokenizer.train(pairs.captions, o["vocab_size"], context_length=32)
    model = CLIP(embed_dim=o["embed_dim"], image_size=IMAGE_SIZE, patch_size=o["patch_size"],
                 vision_dim=o["dim"], vision_depth=o["depth"], vision_heads=o["heads"],
                 vocab_size=tokenizer.vocab_size, context_length=32, text_dim=o["dim"],
                 text_depth=o["depth"], text_heads=o["heads"])
    ids, mask = tokenizer(pairs.captions)
    optimizer, scheduler = recipe.make_optimizer(model, o["lr"], 0.1, o["steps"], 50)
    history = train(model, lambda m, b: recipe.loss(m, b),
                    recipe.batches(pairs.images, ids, mask, o["batch_size"], seed), optimizer, o["steps"],
                    scheduler, clip_norm=1.0, progress=progress, desc="clip reranker",
                    on_step=lambda s: model.clamp_logit_scale_())
    return model.eval(), tokenizer, {"steps": o["steps"], "train_seconds": history.seconds,
                                     "final_loss": history.loss[-1]}


def default_reranker(seed=0, progress=True, pairs=None, **overrides):
    """The cached reranker of ``seed`` (trained once on ``make_dalle_data``'s pairs);
    ``overrides`` change ``RERANKER``'s settings, and each set of settings is cached apart."""
    from minivl.recipes.dvae import cache_dir

    unknown = sorted(set(overrides) - set(RERANKER))
    if unknown:
        raise ValueError(f"unknown reranker setting(s) {unknown}; RERANKER has {sorted(RERANKER)}")
    settings = {**RERANKER, **overrides}
    key = json.dumps({**settings, "n_train": DEFAULTS["n_train"], "seed": seed}, sort_keys=True)
    path = cache_dir() / f"dalle-clip-{hashlib.sha1(key.encode()).hexdigest()[:10]}.safetensors"
    if not path.exists():
        pairs = pairs if pairs is not None else make_dalle_data(DEFAULTS["n_train"], seed)[0]
        model, tokenizer, info = train_reranker(pairs, seed, progress, **overrides)
        save_checkpoint(model, path, **info)
        tokenizer.save(path.with_name(path.stem + ".tokenizer.json"))
    model = load_checkpoint(CLIP, path).eval()
    return model, CLIPTokenizer.load(path.with_name(path.stem + ".tokenizer.json"))


def clip_scores(clip, tokenizer, images, captions, batch_size=512) -> np.ndarray:
    """``images (C, n, S, S, 3)`` uint8, one caption per row -> scaled cosine scores ``(C, n)``."""
    C, n = images.shape[:2]
    flat = images.reshape(C * n, *images.shape[2:])
    with no_grad():
        emb = np.concatenate([clip.encode_image(preprocess(flat[i:i + batch_size])).data
                              for i in range(0, len(flat), batch_size)]).reshape(C, n, -1)
        ids, mask = tokenizer(list(captions))
        text = clip.encode_text(ids, mask).data  # (C, E)
    return clip.scale * np.einsum("cne,ce->cn", emb, text)


def caption_preference(clip, tokenizer, pairs) -> dict:
    """How often a reranker scores the true caption of a real image above the same caption
    with its shape words swapped (``shape``) or its colour words swapped (``colour``;
    ``swap_words``): 0.5 is a reranker blind to those words, 1.0 one that always prefers the
    truth. A tie counts as not preferred. A reranker can only pick the right candidate of
    16 if it tells a right shape from a wrong one."""
    from minivl.data.shapes import COLOURS, SHAPES

    images = pairs.images[:, None]  # (N, 1, S, S, 3): one candidate per caption
    true = clip_scores(clip, tokenizer, images, pairs.captions)[:, 0]
    out = {}
    for name, words in (("shape", SHAPES), ("colour", COLOURS)):
        swapped = clip_scores(clip, tokenizer, images, [swap_words(c, words) for c in pairs.captions])[:, 0]
        out[name] = float((true > swapped).mean())
    return out


def rerank(clip, tokenizer, images, captions):
    """Candidates best first: ``(order (C, n), scores (C, n))`` by CLIP score."""
    scores = clip_scores(clip, tokenizer, images, captions)
    order = np.argsort(-scores, axis=1, kind="stable")
    return order, np.take_along_axis(scores, order, axis=1)


# --------------------------------------------------------------------------- evaluation


def evaluate(model, bpe, dvae, evals, judge, reranker=None, n_candidates=16, n_eval=None, seed=0,
             temperature=1.0, top_k=None, progress=False, guidance=1.0, reader=None) -> dict:
    """Judge the generations of each evaluation set's captions.

    ``judge(images uint8 (N, S, S, 3), captions: list[Caption]) -> bool (N,)``:
    whether each image shows exactly what its caption says. Per set: ``correct``
    (first sample), ``correct_rerank`` (CLIP-best of ``n_candidates``, with
    ``reranker = (clip, tokenizer)``), ``correct_any`` (some candidate is
    correct: the ceiling of reranking), ``correct_shuffled`` (each first sample
    judged against another caption of the set: a generator that ignored the
    text), ``real`` (the judge on the real images) and the code perplexity. ``guidance``: the
    classifier-free guidance scale of the sampling (1: the paper's). With ``reader`` (images ->
    the judge's ``Scene`` per image, e.g. ``Judge.reads``): ``by_attribute``, what the first
    samples get right attribute by attribute (``attribute_accuracy``), and
    ``confusion_all_candidates``: the shape and colour ``confusion`` over all
    ``n_candidates`` candidates of every caption.
    """
    from minivl.recipes.dvae import code_usage

    out = {}
    for name, pairs in evals.items():
        pairs = pairs[:n_eval] if n_eval else pairs
        codes = generate_codes(model, bpe, pairs.captions, n_candidates, temperature, top_k, seed,
                               progress=progress, guidance=guidance)  # (C, n, h, w)
        images = decode(dvae, codes)  # (C, n, S, S, 3)
        C, n = codes.shape[:2]
        ok = judge(images.reshape(C * n, *images.shape[2:]),
                   [c for c in pairs.structured for _ in range(n)]).reshape(C, n)
        shuffled = np.roll(np.arange(C), 1)
        m = {"captions": C, "candidates": n, "correct": float(ok[:, 0].mean()),
             "correct_mean_over_candidates": float(ok.mean()), "correct_any": float(ok.any(1).mean()),
             "correct_shuffled": float(judge(images[:, 0], [pairs.structured[i] for i in shuffled]).mean()),
             "real": float(judge(pairs.images, pairs.structured).mean()),
             "code_perplexity": code_usage(codes, model.config.image_vocab)["perplexity"],
             "data_code_perplexity": code_usage(encode_images(dvae, pairs.images),
                                                model.config.image_vocab)["perplexity"]}
        if reranker is not None:
            order, _ = rerank(*reranker, images, pairs.captions)
            m["correct_rerank"] = float(ok[np.arange(C), order[:, 0]].mean())
        if reader is not None:
            reads = reader(images.reshape(C * n, *images.shape[2:]))  # every candidate
            m["by_attribute"] = attribute_accuracy(reads[::n], pairs.structured)  # the first samples
            every = [c for c in pairs.structured for _ in range(n)]
            m["confusion_all_candidates"] = {f: confusion(reads, every, f) for f in ("shape", "colour")}
        out[name] = m
    return out


# Which parts of a caption a reading must get right for each entry of ``attribute_accuracy``:
# the fields of each phrase kept (the rest left free), and whether a relation is kept.
ATTRIBUTES = {"objects": ((), False), "colours": (("colour",), False), "shapes": (("shape",), False),
              "sizes": (("size",), False), "colours_shapes": (("colour", "shape"), False),
              "phrases": (("colour", "shape", "size"), False), "exact": (("colour", "shape", "size"), True)}


def relax(caption, fields, relation=True):
    """``caption`` saying only ``fields`` of each phrase (the others left free); without
    ``relation`` a relation caption becomes a list of its two phrases (where they stand is free)."""
    from dataclasses import replace

    phrases = tuple(replace(p, **{f: None for f in ("shape", "colour", "size") if f not in fields})
                    for p in caption.phrases)
    if caption.kind == "relation" and not relation:
        return replace(caption, kind="list", phrases=phrases, relation=None)
    return replace(caption, phrases=phrases)


def attribute_accuracy(reads, captions) -> dict:
    """What generated images get right, attribute by attribute: for each entry of ``ATTRIBUTES``,
    the fraction of ``reads`` (a judge's ``Scene`` per image) that show exactly as many objects
    as ``captions`` name and fit the caption relaxed to those fields (``relax``). ``objects``:
    the count alone; ``colours``: the count and the colours (a multiset match); ``exact``: the
    judge's verdict. ``sizes`` counts only captions that name a size (``captions_naming_a_size``);
    ``relations``: ``exact`` among relation captions whose ``phrases`` are right."""
    from minivl.models.judge import says_exactly

    out = {}
    for name, (fields, relation) in ATTRIBUTES.items():
        ok = np.array([says_exactly(relax(c, fields, relation), r) for c, r in zip(captions, reads)], bool)
        if name == "sizes":
            named = np.array([any(p.size is not None for p in c.phrases) for c in captions], bool)
            out["captions_naming_a_size"] = int(named.sum())
            ok = ok[named]
        out[name] = float(ok.mean()) if len(ok) else float("nan")
    is_relation = np.array([c.kind == "relation" for c in captions], bool)
    phrases_ok = np.array([says_exactly(relax(c, ATTRIBUTES["phrases"][0], False), r)
                           for c, r in zip(captions, reads)], bool)
    exact = np.array([says_exactly(c, r) for c, r in zip(captions, reads)], bool)
    keep = is_relation & phrases_ok
    out["relation_captions"] = int(is_relation.sum())
    out["relations"] = float(exact[keep].mean()) if keep.any() else float("nan")
    return out


def confusion(reads, captions, field="shape") -> dict:
    """What generations draw for the ``field`` (``"shape"`` or ``"colour"``) a caption names,
    object by object. Each phrase naming ``field`` is matched to the read object it describes
    by the other attribute (the colour when ``field`` is the shape, and the other way round):
    the one read object of that colour, or the only object read for a one-phrase caption.
    ``matrix[named, read]`` counts the matched objects by their read value; ``matrix[named,
    -1]`` the phrases left unmatched (as many objects read as the caption names, but none or
    several of that colour; or a wrong count). Phrases that cannot be told apart by the other
    attribute (two phrases of one colour, or one not naming it) enter only for one-phrase
    captions. ``reads``: a judge's ``Scene`` per image; ``captions``: ``Caption``.

    ``accuracy``: the diagonal over the matched objects (``field`` right, whatever else is
    wrong); ``matched``: the fraction of phrases matched; ``phrases``: how many entered."""
    from minivl.data.shapes import COLOURS, SHAPES

    names = {"shape": SHAPES, "colour": COLOURS}[field]
    key = {"shape": "colour", "colour": "shape"}[field]
    matrix = np.zeros((len(names), len(names) + 1), dtype=np.int64)
    for caption, read in zip(captions, reads):
        phrases = caption.phrases
        keys = [getattr(p, key) for p in phrases]
        for p in phrases:
            named = getattr(p, field)
            if named is None:
                continue
            if len(phrases) == 1:
                found = list(read.objects)
            elif getattr(p, key) is None or keys.count(getattr(p, key)) > 1:
                continue  # this phrase's object cannot be told from the other one's
            else:
                found = [o for o in read.objects if getattr(o, key) == getattr(p, key)]
            ok = len(read) == len(phrases) and len(found) == 1
            matrix[named, getattr(found[0], field) if ok else -1] += 1
    matched = matrix[:, :-1].sum()
    return {"field": field, "matched_by": key, "names": list(names), "matrix": matrix.tolist(),
            "phrases": int(matrix.sum()),
            "matched": float(matched / matrix.sum()) if matrix.sum() else float("nan"),
            "accuracy": float(np.trace(matrix[:, :-1]) / matched) if matched else float("nan")}


def probe_captions(held_out_pairs=None) -> list:
    """``"a {size} {colour} {shape}."`` (list template 0, sizes "small" / "large") for every
    colour-shape pair training shows (all but ``held_out_pairs``, default
    ``DEFAULT_HELD_OUT_PAIRS``) and both sizes: ``Caption``s of one object each."""
    from minivl.data.captions import Caption
    from minivl.data.language import Description
    from minivl.data.shapes import COLOURS, DEFAULT_HELD_OUT_PAIRS, SHAPES, SIZES

    held = set(DEFAULT_HELD_OUT_PAIRS if held_out_pairs is None else held_out_pairs)
    return [Caption("list", (Description(shape=s, colour=c, size=z),))
            for s in range(len(SHAPES)) for c in range(len(COLOURS)) for z in range(len(SIZES))
            if (COLOURS[c], SHAPES[s]) not in held]


def single_object_probe(model, bpe, dvae, reader, n=16, seed=0, temperature=1.0, top_k=None,
                        guidance=1.0) -> dict:
    """Can the prior draw one object of a shape it was asked for? ``n`` samples of every
    ``probe_captions`` caption (trained pairs: no binding of two phrases, no unseen pair),
    read by ``reader`` (a judge's ``Judge.reads``): the shape and colour ``confusion`` and the
    fraction read exactly as captioned (``exact``)."""
    from minivl.models.judge import says_exactly

    captions = probe_captions()
    codes = generate_codes(model, bpe, [c.text for c in captions], n, temperature, top_k, seed,
                           guidance=guidance)
    images = decode(dvae, codes)  # (C, n, S, S, 3)
    reads = reader(images.reshape(-1, *images.shape[2:]))
    every = [c for c in captions for _ in range(n)]
    return {"captions": len(captions), "candidates": n,
            "exact": float(np.mean([says_exactly(c, r) for c, r in zip(every, reads)])),
            "shape": confusion(reads, every, "shape"), "colour": confusion(reads, every, "colour")}


def swap_words(text: str, words, shift=1) -> str:
    """``text`` with every word of ``words`` (or its plural) replaced by the word ``shift``
    places on (cyclic): with SHAPES, each shape named becomes another shape; the rest of the
    caption stays."""
    from minivl.data.language import plural

    table = {w: words[(i + shift) % len(words)] for i, w in enumerate(words)}
    table.update({plural(w): plural(v) for w, v in list(table.items())})
    return re.sub(r"[a-z]+", lambda m: table.get(m.group(), m.group()), text)


def swap_losses(model, bpe, captions, codes) -> dict:
    """Does the prior read the shape and colour words? Teacher-forced image loss of each
    image's own codes ``(N, h, w)`` after its true caption, after the same caption with every
    shape word swapped for another shape, and with every colour word swapped.

    Per variant: nats per code (mean over all codes) and per image (summed over its codes);
    ``*_gap_per_image``: swapped minus true, per image; ``*_prefers_true``: the fraction of
    images whose codes are likelier after the true caption. A prior that ignores a kind of
    word shows a gap near 0 and a preference near 0.5.
    """
    from minivl.data.shapes import COLOURS, SHAPES

    variants = {"true": list(captions), "shape_swapped": [swap_words(c, SHAPES) for c in captions],
                "colour_swapped": [swap_words(c, COLOURS) for c in captions]}
    fits = np.array([all(len(bpe.encode(v[i])) <= model.config.text_len for v in variants.values())
                     for i in range(len(captions))], dtype=bool)  # a swap may need more BPE tokens
    codes = np.asarray(codes)[fits]
    per_image = {}
    for name, texts in variants.items():
        texts = [t for t, keep in zip(texts, fits) if keep]
        streams = model.stream(text_ids(model, bpe, texts), codes)
        per_image[name] = np.concatenate([model.code_nll(streams[i:i + 100]).sum(axis=1)
                                          for i in range(0, len(streams), 100)])  # (N,)
    n_codes = model.n_image
    out = {"images": int(fits.sum()), "too_long_after_a_swap": int((~fits).sum()), "codes_per_image": n_codes}
    for name, nll in per_image.items():
        out[f"{name}_nats_per_code"] = float(nll.mean() / n_codes)
        out[f"{name}_nats_per_image"] = float(nll.mean())
    for name in ("shape_swapped", "colour_swapped"):
        gap = per_image[name] - per_image["true"]
        out[f"{name}_gap_per_image"] = float(gap.mean())
        out[f"{name}_prefers_true"] = float((gap > 0).mean())
    return out


def time_masks(model, streams, repeats=3) -> dict:
    """Seconds for one forward + backward of ``streams`` under each attention kind.

    "full" runs twice: through the fused kernel (no mask), and through the
    composed path with a dense causal mask, the path every sparse mask takes
    (minivl has no sparse kernel: a masked pair is computed, then dropped).
    """
    from minivl.models.dalle import attention_mask

    c = model.config
    ids = streams[:, :-1]
    kinds = {"full (fused kernel)": None}
    for kind in ("full", "row", "column", "conv"):
        kinds[kind] = [attention_mask(kind, c.text_len, c.grid_h, c.grid_w, c.kernel)] * c.depth
    out = {}
    for name, masks in kinds.items():
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            h = model.transformer(ids, attn_mask=masks)
            h.sum().backward()
            seconds.append(time.perf_counter() - t0)
        model.zero_grad()
        allowed = 1.0 if masks is None else float(masks[0][c.text_len:].sum() /
                                                  np.tril(np.ones_like(masks[0]))[c.text_len:].sum())
        out[name] = {"seconds": float(np.median(seconds)), "image_pairs_attended": allowed}
    return out


def mask_experiment(dvae, steps=150, seed=0, progress=True, data=None, **overrides) -> dict:
    """Train one small prior per attention pattern on the same batches; held-out losses,
    seconds per training step, and the time of one forward + backward per mask."""
    out, first = {}, None
    for kind in ("full", "row", "column", "conv", "sparse"):
        r = train_prior(dvae, steps=steps, attention=kind, seed=seed, progress=progress, data=data,
                        eval_every=0, **overrides)
        data, first = r["data"], first or r
        m = r["metrics"]
        out[kind] = {"held_out_scenes_image_loss": m["held_out_scenes_image_loss"],
                     "held_out_scenes_text_loss": m["held_out_scenes_text_loss"],
                     "seconds_per_step": m["train_seconds"] / steps}
    streams = first["model"].stream(text_ids(first["model"], first["bpe"], data[0].captions[:32]), data[3][:32])
    return {"training": out, "forward_backward_32": time_masks(first["model"], streams),
            "steps": steps, "load_average": _load()}


def mask_figure(text_len=4, grid_h=4, grid_w=4, kernel=3):
    """The four attention patterns as pictures (rows: queries, columns: keys; white = attends),
    for a small stream like the paper's figure 11 (6 caption tokens, a 4 x 4 grid there)."""
    from matplotlib.figure import Figure

    from minivl.models.dalle import attention_mask

    fig = Figure(figsize=(11, 3.2))
    for k, kind in enumerate(("full", "row", "column", "conv")):
        ax = fig.add_subplot(1, 4, k + 1)
        ax.imshow(attention_mask(kind, text_len, grid_h, grid_w, kernel), cmap="gray", interpolation="nearest")
        ax.axhline(text_len - 0.5, color="tab:orange", lw=0.8)
        ax.axvline(text_len + 0.5, color="tab:orange", lw=0.8)
        ax.set(title=f"{kind}" + (f" ({kernel}x{kernel})" if kind == "conv" else ""), xticks=[], yticks=[],
               xlabel="key position", ylabel="query position" if k == 0 else None)
    fig.suptitle(f"{text_len} caption tokens, <soi>, a {grid_h}x{grid_w} grid of codes "
                 "(orange: caption | image)", fontsize=9)
    return fig


def _load() -> float:
    import os

    return round(os.getloadavg()[0], 2)


def _grid_figure(images, captions, scores, path):
    from minivl.viz.images import image_grid

    C, n = images.shape[:2]
    labels = [f"{captions[c][:40]}\nCLIP {scores[c, k]:.1f}" if k == 0 else f"CLIP {scores[c, k]:.1f}"
              for c in range(C) for k in range(n)]
    image_grid(images.reshape(C * n, *images.shape[2:]), labels, ncols=n).savefig(path, dpi=90)


def run_seed(seed, steps=None, n_eval=100, n_candidates=16, progress=True, folder=None, dvae=None,
             temperature=1.0, top_k=None, prior=None, stem="dalle", guidance=1.0, **overrides) -> dict:
    """One seed of the results file: train the prior (on the default dVAE), the reranker,
    judge its generations; a PNG grid of reranked samples into ``folder``. ``dvae``: a
    checkpoint path (default: the cached default dVAE). The prior is
    saved in ``runs/dalle-seed{seed}`` (for ``minivl dalle generate --checkpoint``).
    ``prior``: the path of a prior saved that way, judged again (e.g. at another
    temperature or top-k) instead of training one; its training record is kept. The PNG is
    ``{stem}_samples_seed{seed}.png`` (``stem``: the results file's stem).
    ``single_object_probe``: the same sampling on one-object captions of trained pairs
    (``single_object_probe``), the shape a prior draws when no binding is needed.

    ``guidance``: a classifier-free guidance scale, or several, each judged on the same
    prior; ``evaluation`` holds the first, ``evaluation_by_guidance`` every one (keyed
    ``str(float(s))``), and scales after the first get their own PNG
    (``..._seed{seed}_guidance{s}.png``)."""
    from minivl.recipes.judge import default_judge

    dvae_path = dvae
    dvae = tokenizer(dvae, seed, progress, overrides.get("n_train"))
    if prior is None:
        r = train_prior(dvae, steps=steps, seed=seed, progress=progress, out=f"runs/dalle-seed{seed}",
                        **overrides)
    else:
        r = reload_prior(prior, dvae, seed)
    load_after_training = _load()
    judge = default_judge(0, progress)
    train_pairs, evals = r["data"][:2]
    t0 = time.perf_counter()
    reranker = default_reranker(seed, progress, pairs=train_pairs)
    reranker_seconds = time.perf_counter() - t0
    preference = {name: caption_preference(*reranker, pairs[:n_eval]) for name, pairs in evals.items()}
    t0 = time.perf_counter()
    scales = [float(s) for s in np.atleast_1d(guidance)]
    by_scale, seconds = {}, {}
    for s in scales:
        t1 = time.perf_counter()
        by_scale[str(s)] = evaluate(r["model"], r["bpe"], dvae, evals, judge.matches, reranker, n_candidates,
                                    n_eval, seed, temperature, top_k, progress=progress, guidance=s,
                                    reader=judge.reads)
        seconds[str(s)] = time.perf_counter() - t1
    scores = by_scale[str(scales[0])]
    t1 = time.perf_counter()
    probe = single_object_probe(r["model"], r["bpe"], dvae, judge.reads, seed=seed, temperature=temperature,
                                top_k=top_k, guidance=scales[0])
    probe["seconds"] = time.perf_counter() - t1
    for name, pairs in evals.items():  # what the judge reads in the dVAE's reconstructions
        codes = encode_images(dvae, pairs.images[:n_eval])
        recon = decode(dvae, codes[:, None])[:, 0]
        scores[name]["real_reconstructed"] = float(judge.matches(recon, pairs.structured[:n_eval]).mean())
        scores[name]["real_reconstructed_by_attribute"] = attribute_accuracy(judge.reads(recon),
                                                                             pairs.structured[:n_eval])
        scores[name]["swap"] = swap_losses(r["model"], r["bpe"], pairs.captions[:n_eval], codes)
    if folder is not None:
        pairs = evals["held_out_pairs"]
        for k, s in enumerate(scales):
            codes = generate_codes(r["model"], r["bpe"], pairs.captions[:6], 8, temperature, top_k, seed=seed,
                                   guidance=s)
            images = decode(dvae, codes)
            order, ranked = rerank(*reranker, images, pairs.captions[:6])
            name = f"{stem}_samples_seed{seed}" + (f"_guidance{s:g}" if k else "") + ".png"
            _grid_figure(np.take_along_axis(images, order[:, :, None, None, None], 1), pairs.captions[:6],
                         ranked, Path(folder) / name)
    history = r["history"]
    return {"prior": r["metrics"], "evaluation": scores, "temperature": temperature, "top_k": top_k,
            "guidance": scales[0], "single_object_probe": probe, "evaluation_by_guidance": by_scale,
            "evaluation_seconds_by_guidance": seconds,
            "dvae": str(dvae_path) if dvae_path else "default_dvae(0)",
            "load_average_after_training": load_after_training,
            "load_average_after_evaluation": _load(), "evaluation_seconds": time.perf_counter() - t0,
            "reranker_seconds": reranker_seconds, "reranker": dict(RERANKER),
            "reranker_caption_preference": preference,
            "curve": {"steps": history.steps[::10], "loss": history.loss[::10], "evals": history.evals}}


def swap_run(seed, steps=None, n_eval=100, dvae=None, progress=True, **overrides) -> dict:
    """Train a prior (on ``dvae``, a checkpoint path, or the cached default dVAE) and measure
    only ``swap_losses`` on each evaluation set: no sampling, no judge, no reranker (the cheap
    half of ``run_seed``, for the 16 x 16 grid whose sampling is slow)."""
    from minivl.recipes.dvae import default_dvae, load_dvae

    dvae_model = load_dvae(dvae) if dvae else default_dvae(0, progress)
    r = train_prior(dvae_model, steps=steps, seed=seed, progress=progress, **overrides)
    evals, eval_codes = r["data"][1], r["data"][4]
    swaps = {name: {"swap": swap_losses(r["model"], r["bpe"], pairs.captions[:n_eval], eval_codes[name][:n_eval])}
             for name, pairs in evals.items()}
    return {"prior": r["metrics"], "evaluation": swaps, "dvae": str(dvae) if dvae else "default_dvae(0)",
            "load_average_after_training": _load()}


class _Record:
    """The training record of a saved prior (``history`` of ``run_seed``'s results)."""

    def __init__(self, steps, loss, evals):
        self.steps, self.loss, self.evals = steps, loss, evals


def reload_prior(path, dvae, seed) -> dict:
    """``train_prior``'s result for a prior saved by ``train_prior(out=...)``: the model, its
    BPE and the evaluation pairs of ``seed``; metrics from the checkpoint's metadata."""
    model, bpe, words = load_prior(path)
    check_pair(model, dvae)
    meta = checkpoint_metadata(path)
    train_pairs, evals = make_dalle_data(int(meta.get("n_train", DEFAULTS["n_train"])), seed)
    metrics = {**{k: v for k, v in meta.items() if k != "words"}, "reloaded_from": str(path)}
    return {"model": model, "bpe": bpe, "words": words, "dvae": dvae, "metrics": metrics,
            "history": _Record([], [], []), "data": (train_pairs, evals)}


def main(argv=None):
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/dalle.json")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None, help=f"prior steps (default {DEFAULTS['steps']})")
    parser.add_argument("--n-eval", type=int, default=100, help="captions per evaluation set")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--masks", type=int, default=0, help="steps of the attention-mask experiment (0: skip)")
    parser.add_argument("--mask-timing", action="store_true",
                        help="time one forward + backward per attention mask (prior of DEFAULTS' size, random codes)")
    parser.add_argument("--dvae", default=None, help="a dVAE checkpoint (default: the cached default dVAE), "
                        "or 'kmeans' for the PatchCodebook stand-in, or 'exact2' / 'exact4' for the "
                        "ExactPatches diagnostic (every 2 x 2 / 4 x 4 patch its own code)")
    parser.add_argument("--code-entropy", action="store_true",
                        help="only measure code_entropy of the tokenizer on each seed's training renders")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest codes only")
    parser.add_argument("--guidance", type=float, nargs="+", default=[GUIDANCE],
                        help="classifier-free guidance scale(s), each judged on the same prior; the first is "
                        "the run's 'evaluation' (1 = DALL-E's sampling; guidance is a later addition)")
    parser.add_argument("--caption-dropout", type=float, default=None,
                        help=f"training captions replaced by the empty one (default {DEFAULTS['caption_dropout']})")
    parser.add_argument("--prior", default=None, help="judge this saved prior (runs/dalle-seedN/prior.safetensors) "
                        "again instead of training one; with one seed")
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--depth", type=int, default=None)
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {DEFAULTS['lr']})")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--n-train", type=int, default=None,
                        help=f"training pairs (default {DEFAULTS['n_train']}); exact2 / exact4 are fitted on them")
    parser.add_argument("--image-positions", choices=("flat", "axial"), default=None,
                        help=f"position embeddings of image tokens (default {DEFAULTS['image_positions']})")
    parser.add_argument("--swap-only", action="store_true",
                        help="train and measure only the shape/colour word-swap losses (swap_run)")
    parser.add_argument("--reranker-preference", type=int, nargs="+", default=None, metavar="STEPS",
                        help="only measure caption_preference of the cached rerankers trained STEPS steps (each "
                        "trained first if not cached) on each seed's evaluation pairs")
    parser.add_argument("--backend", default="numba", help="kernel backend (default: numba)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    import minivl

    minivl.use(args.backend)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m minivl.recipes.dalle " + " ".join(sys.argv[1:] if argv is None else argv)

    def write(section, key, value):  # re-read first: seeds run as separate invocations merge
        payload = json.loads(out.read_text()) if out.exists() else {}
        payload["machine"] = f"{os.cpu_count()} cores, shared; load averages recorded per run"
        written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        payload.setdefault(section, {})[key] = {"command": command, "written": written, **value}
        out.write_text(json.dumps(payload, indent=1))

    mask_figure().savefig(out.parent / "dalle_masks.png", dpi=100)
    for seed in args.seeds:
        size = {k: v for k, v in (("dim", args.dim), ("depth", args.depth), ("heads", args.heads),
                                  ("lr", args.lr), ("batch_size", args.batch_size), ("n_train", args.n_train),
                                  ("image_positions", args.image_positions),
                                  ("caption_dropout", args.caption_dropout)) if v is not None}
        if args.code_entropy:
            t0 = time.perf_counter()
            tok = tokenizer(args.dvae, seed, not args.quiet)
            images = make_dalle_data(DEFAULTS["n_train"], seed)[0].images[:5000]
            entropy = code_entropy(encode_images(tok, images), images, IMAGE_SIZE // tok.grid[0])
            write("code_entropy", str(seed), {"dvae": args.dvae or "default_dvae(0)", "images": len(images),
                                               "grid": list(tok.grid), "K": tok.K, **entropy,
                                               "seconds": time.perf_counter() - t0, "load_average": _load()})
            print(json.dumps(entropy))
            continue
        if args.reranker_preference:
            train_pairs, evals = make_dalle_data(DEFAULTS["n_train"], seed)
            for steps in args.reranker_preference:
                reranker = default_reranker(seed, not args.quiet, pairs=train_pairs, steps=steps)
                preference = {k: caption_preference(*reranker, v[:args.n_eval]) for k, v in evals.items()}
                write("reranker_preference", f"seed{seed}_steps{steps}",
                      {**preference, "images_per_set": args.n_eval, "reranker": {**RERANKER, "steps": steps}})
                print(steps, json.dumps(preference))
            continue
        if args.swap_only:
            run = swap_run(seed, args.steps, args.n_eval, args.dvae, not args.quiet, **size)
            write("runs", str(seed), run)
            print(json.dumps(run["evaluation"]))
            continue
        run = run_seed(seed, args.steps, args.n_eval, args.candidates, not args.quiet, out.parent, args.dvae,
                       temperature=args.temperature, top_k=args.top_k, prior=args.prior, stem=out.stem,
                       guidance=args.guidance, **size)
        write("runs", str(seed), run)
        print(json.dumps({g: {k: {m: round(v, 3) for m, v in s.items() if "correct" in m} for k, s in e.items()}
                          for g, e in run["evaluation_by_guidance"].items()}))
    if args.mask_timing:  # the 8 x 8 grid of the earlier dVAE and the 16 x 16 of the default one
        for g, key in ((8, "batch32"), (16, "batch32_16x16")):
            model = DALLE(text_vocab=384, text_len=DEFAULTS["text_len"], image_vocab=512, grid_h=g, grid_w=g,
                          dim=DEFAULTS["dim"], depth=DEFAULTS["depth"], num_heads=DEFAULTS["heads"])
            rng = np.random.default_rng(0)
            streams = model.stream(model.pad_text([rng.integers(0, 384, 10) for _ in range(32)]),
                                   rng.integers(0, 512, (32, g, g)))
            write("mask_timing", key, {"forward_backward": time_masks(model, streams), "grid": [g, g],
                                       "load_average": _load()})
    if args.masks:
        from minivl.recipes.dvae import default_dvae, load_dvae

        dvae = PatchCodebook(make_dalle_data(3000, 0)[0].images) if args.dvae == "kmeans" else \
            load_dvae(args.dvae) if args.dvae else default_dvae(0)
        masks = mask_experiment(dvae, steps=args.masks, progress=not args.quiet, dim=64, depth=4)
        write("masks", "seed0", masks)
        print(json.dumps(masks, indent=1))


if __name__ == "__main__":
    main()
