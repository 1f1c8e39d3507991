# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · ViLBERT: two streams joined by co-attention (S03–S11)
#
# ViLBERT (Lu et al., 2019) reads an image as the regions a detector found and a
# sentence as BERT reads it, in two transformer streams that exchange keys and
# values at a few co-attention layers; it is pretrained on captioned images with
# two proxy tasks, then fine-tuned with one small head per task.
#
# This notebook walks the lecture's ViLBERT slides on the shapes world:
#
# - **S04** region tokens from a detector we train ourselves,
# - **S05** the 5-d location and the [IMG] token,
# - **S03** the two streams, **S06** co-attention step by step on one example,
# - **S07–S09** pretraining: masked words, masked regions (KL to the detector), alignment,
# - **S10** one head per transfer task, **S11** the comparison with baselines.
#
# The notes are `lectures/08-vilbert.md`. The runs here are tiny (a few
# seconds each); the figures quoted in the notes come from the results files.

# %%
# %matplotlib inline
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minivl as mv
from minivl import functional as F
from minivl.data import ShapesWorld
from minivl.data.regions import RegionEncoder
from minivl.models.vision import preprocess
from minivl.tensor import Tensor, no_grad
from minivl.viz.regions import detections_figure, location_figure
from minivl.viz.vilbert import co_attention_figure, masked_region_figure

CI = os.environ.get("MINIVL_NOTEBOOK_CI") == "1"  # the test runner asks for a short run
ROOT = Path.cwd() if (Path.cwd() / "results").exists() else Path(mv.__file__).resolve().parents[1]
mv.manual_seed(0)

# %% [markdown]
# ## S04 · Region tokens from a trained detector
#
# ViLBERT's visual tokens are the regions of a Faster R-CNN: per box, the
# mean-pooled convolutional feature inside it, and the detector's class
# distribution. Ours is a small convolutional network trained to name the
# object in each ground-truth box (36 classes: shape × colour). Its feature map
# is 16 × 16 for a 32 × 32 image; a region's feature is the mean of the cells
# whose centres lie in its box.
#
# `RegionEncoder.load_default()` reads the detector of the default recipe
# (`minivl detector train`), so nothing trains here.

# %%
encoder = RegionEncoder.load_default()
print(encoder.detector)
world = ShapesWorld(image_size=32, max_objects=3, seed=1)
scenes = world.iid_scenes(8, "test", rng=np.random.default_rng(1))
images = world.render(scenes)
regions = encoder.encode_scenes(scenes)
print("feats", regions.feats.shape, "locs", regions.locs.shape, "mask", regions.mask.shape,
      "det_probs", regions.det_probs.shape, "source:", regions.source)
detections_figure(images[:4], regions[:4], top=2)

# %% [markdown]
# Region accuracy of the detector on held-out scenes, from the results file
# the default recipe wrote:

# %%
results = json.loads((ROOT / "results" / "detector.json").read_text())
for seed, run in results["results"]["runs"].items():
    print(f"{seed}: region accuracy {run['test']['accuracy']:.3f} (shape {run['test']['shape_accuracy']:.3f}, "
          f"colour {run['test']['colour_accuracy']:.3f}); with boxes jittered by 10%: "
          f"{run['test_jittered']['accuracy']:.3f}; chance {run['chance']:.3f}")

# %% [markdown]
# `det_probs` is the KL target of S08. The trained detector is nearly sure of
# each region; the hand-made "simulated" fallback (`minivl/data/detector.py`)
# spreads mass over look-alike classes. `RegionBatch.source` says which one a
# batch carries.

# %%
from minivl.viz.regions import top_classes

simulated = RegionEncoder(encoder.detector, target="simulated").encode_scenes(scenes[:1], rng=np.random.default_rng(0))
for r in range(len(scenes[0])):
    for name, batch_ in (("trained  ", regions), ("simulated", simulated)):
        print(f"region {r} {name}", ", ".join(f"{c} {p:.3f}" for c, p in top_classes(batch_.det_probs[0, 1 + r], 3)))

# %% [markdown]
# The RoI mean-pool, by hand: the feature map, the cells inside the first box,
# their mean; then standardised per dimension with the encoder's fixed
# statistics (the raw features are all positive and far from centred) — the
# same numbers as the region token.

# %%
with no_grad():
    fmap = encoder.detector.features(preprocess(images[:1])).numpy()[0]  # (D, 16, 16)
x1, y1, x2, y2 = (int(v) for v in scenes[0].boxes[0])
centres = (np.arange(16) + 0.5) * 2  # pixel centre of each cell
cols = np.flatnonzero((centres >= x1) & (centres < x2))
rows = np.flatnonzero((centres >= y1) & (centres < y2))
by_hand = fmap[:, rows][:, :, cols].mean(axis=(1, 2))
print("box", (x1, y1, x2, y2), "-> cells rows", rows, "cols", cols)
print("raw mean", by_hand.mean().round(2), "-> standardised mean", ((by_hand - encoder.mean) / encoder.std).mean().round(2))
assert np.allclose((by_hand - encoder.mean) / encoder.std, regions.feats[0, 1], atol=1e-4)

# %% [markdown]
# ## S05 · The 5-d location
#
# Each region also carries where it is: `[x1/W, y1/H, x2/W, y2/H, area fraction]`.
# Token 0 is [IMG]: the mean of the image's region features, at location
# `[0, 0, 1, 1, 1]`.

# %%
location_figure(images[0], scenes[0].boxes[0])

# %%
print("[IMG] location:", regions.locs[0, 0])
n = len(scenes[0])
assert np.allclose(regions.feats[0, 0], regions.feats[0, 1 : 1 + n].mean(0), atol=1e-6)
print("region locations of image 0:\n", regions.locs[0, 1 : 1 + n].round(3))

# %% [markdown]
# Before its `Linear(5)` the model standardises the location per dimension and
# squashes it into (-3, 3) (`VisualEmbedding.scale_locations`), and that Linear
# starts at the feature Linear's output scale. Raw, as in the paper, the
# location part of the sum was about 14 times smaller than the feature part,
# and the regions' positions were lost in the visual stream (notes, S05).

# %%
from minivl.models.vilbert import ViLBERT, ViLBERTConfig
from minivl.recipes.vilbert_probe import RAW_LOCATION

for name, overrides in (("raw (paper)", RAW_LOCATION), ("standardised", {})):
    e = ViLBERT(ViLBERTConfig(feat_dim=regions.feats.shape[-1], **overrides)).visual_embeddings
    with no_grad():
        f = e.feature(Tensor(regions.feats[:, 1:])).numpy()[regions.mask[:, 1:]]
        lo = e.location(e.scale_locations(Tensor(regions.locs[:, 1:]))).numpy()[regions.mask[:, 1:]]
    print(f"{name:13} spread over regions: feature part {f.std(0).mean():.3f}, location part {lo.std(0).mean():.3f}")
print("[IMG] location, scaled:", e.scale_locations(Tensor(regions.locs[:1, :1])).numpy().round(2))

# %% [markdown]
# ## S03 · Two streams
#
# Words go through BERT (embeddings, post-LN blocks); regions through
# `LayerNorm(Linear(feature) + Linear(location))` and blocks of their own width.
# Co-attention layers sit between chosen blocks (`co_attention_at`; the
# default, `((1, 0), (1, 1))`, is the paper's placement: each stream ends on
# a block of its own after the last co-attention layer). We
# pretrain a small ViLBERT for a few steps; in the full recipe its text stream
# starts from minivl's pretrained BERT (`bert=True`), here (in CI) from scratch.

# %%
from minivl.data.corpus import build_corpus
from minivl.recipes.vilbert import pretrain_vilbert

tokenizer = None if not CI else build_corpus(seed=0).tokenizer
small = dict(steps=30 if CI else 300, batch_size=32, n_train=200 if CI else 2000, n_val=100 if CI else 300,
             eval_every=10 if CI else 100, progress=False)
run = pretrain_vilbert("vilbert", bert=not CI, tokenizer=tokenizer, **small)
model, tokenizer = run["model"], run["tokenizer"]
print(model.config)
print(f"{model.num_parameters():,} parameters; co-attention at (text block, visual block) =",
      model.config.co_attention_at)

# %% [markdown]
# ## S06 · Co-attention step by step
#
# One caption and one image. We run each stream up to the first co-attention
# layer, then compute the layer by hand: the text stream's queries against the
# visual stream's keys and values (and the other way round), per head
# `softmax(Q Kᵀ / √d) V`, the output projection, residual + LayerNorm in the
# stream's own width, and the stream's own feed-forward block.

# %%
from scipy.special import erf

from minivl.recipes.vilbert import caption_tokens

model.eval()
caption = world.captions(scenes[:1], rng=np.random.default_rng(0))[0]
ids = caption_tokens(tokenizer, caption)[None]  # (1, T)
text_mask = np.ones_like(ids, dtype=bool)
one = regions[:1]
(t_at, v_at), co = model.config.co_attention_at[0], model.co_blocks[0]
with no_grad():
    text = model.text_embeddings(ids, None)
    for block in model.text_blocks[:t_at]:
        text = block(text, key_padding_mask=text_mask)  # (1, T, Dt)
    visual = model.visual_embeddings(Tensor(one.feats), Tensor(one.locs))
    for block in model.visual_blocks[:v_at]:
        visual = block(visual, key_padding_mask=one.mask)  # (1, 1+R, Dv)
    new_text, new_visual = co.exchange(text, visual, text_mask, one.mask)


def linear(layer, x):
    return x @ layer.weight.data.T + layer.bias.data


def layer_norm(ln, x, eps):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * ln.weight.data + ln.bias.data


def co_attention_by_hand(half, x, context, context_mask, heads, eps):
    """One half of the layer: ``x`` queries ``context``; then residual + LN and the FFN."""
    q, k, v = linear(half.attn.q_proj, x), linear(half.attn.k_proj, context), linear(half.attn.v_proj, context)
    split = lambda t: t.reshape(t.shape[0], heads, -1).transpose(1, 0, 2)  # (heads, N, d)
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])  # (heads, Nq, Nk)
    scores = np.where(context_mask[None, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ v).transpose(1, 0, 2).reshape(x.shape[0], -1)  # (Nq, heads * d)
    x = layer_norm(half.ln_1, x + linear(half.attn.out_proj, attended), eps)
    hidden = linear(half.mlp.fc1, x)
    hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))  # GELU, exact form
    return layer_norm(half.ln_2, x + linear(half.mlp.fc2, hidden), eps), weights


c = model.config
text_by_hand, word_to_region = co_attention_by_hand(co.text, text.numpy()[0], visual.numpy()[0], one.mask[0],
                                                    c.co_heads, c.eps)
visual_by_hand, region_to_word = co_attention_by_hand(co.visual, visual.numpy()[0], text.numpy()[0], text_mask[0],
                                                      c.co_heads, c.eps)
print("text stream: by hand vs minivl, max difference", np.abs(text_by_hand - new_text.numpy()[0]).max())
print("visual stream: by hand vs minivl, max difference", np.abs(visual_by_hand - new_visual.numpy()[0]).max())
assert np.allclose(text_by_hand, new_text.numpy()[0], atol=1e-4)
assert np.allclose(visual_by_hand, new_visual.numpy()[0], atol=1e-4)

# %% [markdown]
# The attention of each word over the regions, averaged over heads, drawn on
# the image: the brighter a box, the more that word attends to it (after a few
# steps of pretraining, these maps are far from sharp).

# %%
words = [tokenizer.decode([int(i)]) for i in ids[0]]
co_attention_figure(images[0], one.boxes[0], words, word_to_region.mean(0))  # mean over heads

# %% [markdown]
# ## S07 · Pretraining, then transfer
#
# The run above trained with the sum of three terms; each is recorded per step.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for name, values in run["terms"].items():
    ax.plot(values, label=name, lw=1)
ax.set(xlabel="step", ylabel="loss", title="pretraining loss per term")
ax.legend()
print("held out:", {k: round(float(v), 3) for k, v in run["metrics"]["held_out"].items() if k != "step"})

# %% [markdown]
# ## S08 · Masked words and masked regions
#
# Words: 15% chosen, 80% of those become [MASK], 10% a random word, 10% stay.
# Regions: 15% chosen, 90% of those zeroed (their location stays); the masked
# region predicts a distribution over the detector's classes, trained by KL to
# the detector's own distribution. Below: one masked region's prediction
# against what the detector said.

# %%
from minivl.recipes.vilbert import captioned_scenes, pretraining_batch, pretraining_losses

data = captioned_scenes(scenes, lambda s, rng: encoder.encode_scenes(s), tokenizer, np.random.default_rng(0))
for seed in range(100):  # masks are random: draw until a region is chosen (15% of 8 images' regions)
    batch = pretraining_batch(data, np.arange(len(scenes)), tokenizer, np.random.default_rng(seed))
    if batch["region_chosen"].any():
        break
with no_grad():
    terms, logits = pretraining_losses(model, batch)
print({k: round(float(v.item()), 3) for k, v in terms.items()})
b, r = np.argwhere(batch["region_chosen"])[0]
print(f"scene {b}, region token {r}, feature zeroed: {bool((batch['feats'][b, r] == 0).all())}")
masked_region_figure(F.softmax(logits["regions"], axis=-1).numpy()[b, r], batch["det_probs"][b, r],
                     true_class=int(batch["region_labels"][b, r]))

# %% [markdown]
# ## S09 · Alignment prediction
#
# Half the captions are swapped for one that is false of the image;
# `Linear(2)` on `pooled_text * pooled_image` says which pairs match.

# %%
aligned_prob = F.softmax(logits["alignment"], axis=-1).numpy()[:, 1]
for a, p in zip(batch["aligned"], aligned_prob):
    print(f"{'own caption    ' if a else 'swapped caption'}  P(match) = {p:.2f}")

# %% [markdown]
# ## S10 · One head per task
#
# Each transfer task adds one small head on the pretrained encoder
# (`minivl/recipes/vilbert_transfer.py`): VQA an MLP over answers on the fused
# vector; referring expressions a score per region; retrieval and VCR a score
# per (text, image) pass, softmax over the options; NLVR a classifier on two
# images' fused vectors; FOIL a score per word, one softmax over [CLS]
# ("correct") and the words ("this one was swapped").
# Here: each head's output on two items, then a short fine-tuning run on VQA
# and on referring expressions.

# %%
from minivl.data.vilbert_tasks import TASKS, gather, make_task, scene_parts
from minivl.recipes.vilbert_transfer import finetune, make_transfer_model, task_loss

sizes = (120, 40, 60) if CI else (2000, 300, 1000)
task_world = ShapesWorld(image_size=32, max_objects=3, seed=0)
parts = scene_parts(task_world, encoder, sizes=sizes)
tasks = {t: make_task(t, task_world, tokenizer, encoder, sizes=sizes, parts=parts, max_len=model.config.max_len)
         for t in TASKS}
for t in TASKS:
    head = make_transfer_model(t, model, tasks[t]["train"])
    two = gather(tasks[t]["train"], [0, 1])
    with no_grad():
        out = head(two)
        loss = task_loss(head, two)
    print(f"{t:9s} passes per item {tasks[t]['train'].passes}, logits {out.shape}, loss {float(loss.item()):.3f}")

# %%
scores = {}
for t in ("vqa", "refexp"):
    result = finetune(t, model, tasks[t], steps=20 if CI else 300, batch_size=16 if CI else 32, progress=False)
    scores[t] = result["metrics"]["test"]
    print(t, {k: round(v, 3) for k, v in scores[t].items() if isinstance(v, float)})

# %% [markdown]
# ## S11 · Summary
#
# ViLBERT against baselines of the same size on the six tasks (single stream,
# late fusion, text only, no pretraining), from the results file of
# `python -m minivl.recipes.vilbert_table` when it has been written.

# %%
table = ROOT / "results" / "vilbert_transfer.json"
if table.exists():
    print(json.dumps(json.loads(table.read_text()).get("summary", {}), indent=1)[:3000])
else:
    print("results/vilbert_transfer.json has not been written yet")
