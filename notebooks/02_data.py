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
# # 02 · Data: the shapes world and the digits
#
# The lecture's vision-and-language tasks (S02: captioning, FOIL, referring
# expressions, VQA, visual dialog, NLVR), ViLBERT's transfer tasks (S10:
# retrieval with hard negatives, VCR-style multiple choice), the detector that
# feeds ViLBERT its regions (S04, S08), and LLaVA's teacher-written instruction
# data (S32, S33) all need images with text about them. minivl makes them all
# from one procedural world of coloured shapes (`minivl/data/`), where every
# sentence is generated, and checked, by rules from the ground truth.
#
# **Where minivl differs from the papers, on purpose:** the images are shapes
# on a black background instead of photos, ViLBERT's regions are the
# ground-truth boxes instead of a Faster R-CNN detector's, and LLaVA's GPT-4
# teacher is a rule-based generator reading the same kind of symbolic view
# (captions and boxes).

# %%
# %matplotlib inline
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np

from minivl.data import (
    ANSWERS,
    CLASS_NAMES,
    DataLoader,
    ShapesWorld,
    load_digits,
    location_features,
    split_words,
)
from minivl.viz import image_grid

world = ShapesWorld(image_size=32, max_objects=3, seed=0)
scenes = world.scenes(8)
images = world.render(scenes)  # (8, 32, 32, 3) uint8
print(world, images.shape, images.dtype)

# %% [markdown]
# ## Scenes, boxes and classes
#
# A scene is a list of objects, each with a shape, a colour, a size and a pixel
# box `(x1, y1, x2, y2)` (`x2, y2` exclusive). The class of an object is its
# (colour, shape) pair: 6 shapes x 6 colours = 36 classes. The grid draws every
# box and its class name, exactly what a detector would report.

# %%
print(scenes[0])
image_grid(
    images,
    boxes=[s.boxes for s in scenes],
    box_labels=[[CLASS_NAMES[c] for c in s.class_ids] for s in scenes],
    ncols=4,
    panel_size=2.2,
)

# %% [markdown]
# ## Image captioning
#
# The stand-in for Conceptual Captions / COCO. Three kinds of caption (a list
# of the objects, a relation between two, counts per shape), several templates
# each, and synonyms for sizes and relations, so one scene has many true
# paraphrases.

# %%
image_grid(images, captions=world.captions(scenes), panel_size=1.8)

# %%
for kind in ("list", "relation", "count"):
    print(f"{kind:>8}:", world.captions([scenes[0]] * 3, kinds=(kind,)))

# %% [markdown]
# ## FOIL: spot the wrong word
#
# One word of a true caption (a shape, colour, size or relation) is swapped so
# that the caption becomes false; the model must say so and point at the word.
# `position` indexes the swapped word, the target of the localisation task.

# %%
for foil in world.foils(scenes)[:5]:
    words = split_words(foil.caption)
    print(f"{foil.original!r:55} -> {foil.caption!r}")
    print(f"{'':55}    word {foil.position} ({words[foil.position]!r}, a {foil.kind} swap)")

# %% [markdown]
# ## Referring expressions
#
# RefCOCO's task: a phrase that picks out exactly one object ("the leftmost
# circle", "the square to the left of the red ring"). ViLBERT scores every
# region; its target is each region's IoU with the referred box, drawn below.

# %%
refs = world.refexps(scenes)
image_grid(
    images[[r.scene_index for r in refs]],
    captions=[f"{r.text} ({r.form})" for r in refs],
    boxes=[[r.box] for r in refs],
    panel_size=1.8,
)

# %% [markdown]
# ## Visual question answering
#
# Six question types (count, colour, shape, size, existence, relation), each
# answered by rule. As in VQA, ten simulated annotators answer each question
# and the target is a soft score per answer, `min(#annotators / 3, 1)`, over a
# fixed answer vocabulary. Questions are drawn answer-first (`balance.py`), so
# "is there a ...?" is "yes" half the time whatever it names, and counts are
# level from zero up.

# %%
qa = world.vqa(scenes, per_scene=2)
for item in qa[:8]:
    soft = {ANSWERS[i]: round(float(s), 2) for i, s in enumerate(item.scores) if s > 0}
    print(f"[{item.qtype:>8}] {item.question:45} {item.answer:6} scores {soft}")
print(len(ANSWERS), "answers:", ANSWERS)

# %% [markdown]
# ## Visual dialog with coreference
#
# The lecture's "Can you see its face? [it = cat]". The caption gives only the
# shapes and their counts; a question names an object by a phrase that fits it
# alone, or finds one ("is there anything left of the square?" - only the image
# says which); "it" is always the object the previous turn was about, which is
# not always the object mentioned last. Each turn stores the index of the object
# it is about, the ground truth for the coreference.

# %%
dialog = world.dialogs(scenes[:1], n_turns=6)[0]
scene = scenes[dialog.scene_index]
print("caption:", dialog.caption)
for turn in dialog.turns:
    about = f"the {scene.objects[turn.referent].name}" if turn.referent >= 0 else "nothing"
    print(f"  Q: {turn.question:50} A: {turn.answer:7} [about {about}]")

# %% [markdown]
# ## NLVR: a statement about two images
#
# The lecture's "the left image has twice as many cats as the right image, and
# at least two cats are black", in shapes. True and false are level within
# every statement kind, and the items come in a random order.

# %%
nlvr = world.nlvr(scenes, 3)
for k, item in enumerate(nlvr):
    print(f"({k}) {item.label!s:>5}  {item.statement}")
image_grid(
    images[[i for item in nlvr for i in (item.left, item.right)]],  # (2 * 3, 32, 32, 3)
    captions=[f"({k}) {side}" for k in range(len(nlvr)) for side in ("left", "right")],
    ncols=6,
    panel_size=1.6,
)

# %% [markdown]
# ## Retrieval with hard negatives
#
# Caption-based image retrieval (S10). Every positive caption lists all the
# objects; a hard negative differs in one attribute, so it is false for the
# image but close to the truth. ViLBERT trains on four candidates per image:
# the true pair, a random caption, a random image, and a hard negative.

# %%
for item in world.retrieval(scenes[:3], n_hard=2):
    print(f"image {item.scene_index}: + {item.caption}")
    for negative in item.hard_negatives:
        print(f"         - {negative}")
quad = world.four_way(scenes)[0]
for k, (i, text) in enumerate(zip(quad.image_indices, quad.captions)):
    print("true pair" if k == quad.label else "         ", f"image {i}: {text}")

# %% [markdown]
# ## Multiple choice with a rationale (VCR-style)
#
# Visual commonsense reasoning asks for an answer among four (Q->A) and then for
# the rationale that justifies it (QA->R). The wrong count options are drawn
# from the whole range (not the counts nearest the truth), and the wrong
# rationales are written like the true one from made-up objects, each agreeing
# with the question and the answer, so only the image tells them apart.

# %%
mc = world.multiple_choice(scenes)[0]
print("Q:", mc.question)
for k, answer in enumerate(mc.answers):
    print(" *" if k == mc.answer_label else "  ", answer)
print("why?")
for k, rationale in enumerate(mc.rationales):
    print(" *" if k == mc.rationale_label else "  ", rationale)

# %% [markdown]
# ## Can it be answered blind?
#
# A dataset where the text gives the answer away teaches a model to ignore the
# image (VQA v1's "what sport is ...?" was mostly "tennis"; VQA v2 and VCR
# were rebuilt for that reason). Every task here is scored by text-only
# baselines fitted on one i.i.d. part's items and scored on another's: the
# commonest answer per question text, a bag-of-words-and-bigrams logistic
# regression, and for multiple choice a scorer that sees each option's words,
# its overlap with the question, its edit distance to the other options and
# the rank of its number. "before" is the generators as they were, "after"
# as they are; the numbers are read from
# `benchmarks/results/blind_baselines.json`, written by
# `python -m minivl.data.blind --out benchmarks/results/blind_baselines.json`.

# %%
from minivl.data.blind import results_table  # noqa: E402

print(results_table())

# %% [markdown]
# Rows: the best text-only accuracy. "nlvr_order" guesses NLVR's label from the
# item's position (the labels used to alternate); "four_way" reads only the
# four captions of ViLBERT's retrieval candidates, where the true caption
# appears twice by design, so a blind reader's ceiling is 1/2. The i.i.d. parts
# come from `world.iid_scenes(n, "train" | "val" | "test")`: a scene's part is
# a hash of the objects it shows, so no image and no caption listing a scene's
# objects is in two parts.

# %% [markdown]
# ## The detector stand-in (ViLBERT S04, S08)
#
# ViLBERT reads regions from a Faster R-CNN detector (1601 Visual Genome
# classes). In masked multi-modal learning it predicts, for each masked region,
# a distribution over those classes, trained with a KL divergence to the
# detector's own distribution (not a regression). minivl takes the
# ground-truth boxes as regions and simulates the distribution: most mass on
# the true class, some on look-alikes (a ring for a circle, cyan for blue).

# %%
p = world.detector(scenes[:1])[0]  # (K, 36): one distribution per object
for obj, dist in zip(scenes[0].objects, p):
    top = np.argsort(dist)[::-1][:4]
    print(f"{obj.name:22}", ", ".join(f"{CLASS_NAMES[c]} {dist[c]:.2f}" for c in top))
print("5-d locations (S05):\n", location_features(scenes[0].boxes, world.image_size))

# %%
fig, ax = plt.subplots(figsize=(9, 2.2))
ax.bar(range(len(CLASS_NAMES)), p[0])
ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=90, fontsize=7)
ax.set_ylabel("p(class)")
ax.set_title(f"simulated detector distribution for the {scenes[0].objects[0].name}")
plt.show()

# %% [markdown]
# ## The compositional split: held-out colour-shape pairs
#
# Six (colour, shape) pairs never appear in the "train" split, while each
# colour and each shape still does; every "test" scene shows at least one of
# them. A model that names a held-out pair correctly must have composed a
# colour and a shape it only saw apart, so "zero-shot" becomes a number we can
# measure instead of a claim about what a web-scale dataset did not contain.
# (In a test scene only one object must carry a held-out pair; the others are
# drawn from all 36 classes, hence the low test bars everywhere in the chart.)

# %%
held_out = world.held_out_class_ids
train = Counter(c for s in world.scenes(500, split="train") for c in s.class_ids.tolist())
test = world.scenes(500, split="test")
print("held out:", sorted(CLASS_NAMES[c] for c in held_out))
print("held-out objects in 500 train scenes:", sum(train[c] for c in held_out))
shows_held_out = [bool(held_out & set(s.class_ids.tolist())) for s in test]
print("test scenes showing a held-out pair:", sum(shows_held_out), "of", len(test))
print("classes seen in train:", len(train), "of", len(CLASS_NAMES))

# %%
test_counts = Counter(c for s in test for c in s.class_ids.tolist())
fig, ax = plt.subplots(figsize=(9, 2.2))
x = np.arange(len(CLASS_NAMES))
ax.bar(x - 0.2, [train[c] for c in x], width=0.4, label="train")
ax.bar(x + 0.2, [test_counts[c] for c in x], width=0.4, label="test")
ax.set_xticks(x, CLASS_NAMES, rotation=90, fontsize=7)
ax.set_ylabel("objects in 500 scenes")
ax.legend()
plt.show()

# %%
zero_shot = world.single_object_scenes(8, split="test")
prompts = world.class_prompts()
image_grid(
    world.render(zero_shot),
    captions=[prompts[s.class_ids[0]] for s in zero_shot],
    panel_size=1.4,
)

# %% [markdown]
# ## LLaVA's teacher-generated instructions (S32, S33)
#
# LLaVA gave GPT-4 a symbolic view of each image, its captions and boxes, and
# asked for (image, instruction, answer) triplets of three types:
# conversations (58K), detailed descriptions (23K) and complex reasoning (77K).
# Our teacher reads the same view of a scene, printed first, and writes the
# three types by rule.

# %%
scene = scenes[1]
print("captions:", world.captions([scene] * 2))
for obj in scene.objects:
    print(f"  {obj.name}: box {obj.box}")

# %%
for kind in ("conversation", "detail", "reasoning"):
    (item,) = world.instructions([scene], kinds=(kind,))
    print(f"--- {kind}")
    for instruction, response in item.turns:
        print("USER:", instruction)
        print("ASSISTANT:", response)

# %%
mix = Counter(item.kind for item in world.instructions(world.scenes(300)))
print("kinds in 300 samples:", dict(mix))

# %% [markdown]
# ## The digits: one real dataset
#
# scikit-learn ships 1,797 handwritten 8x8 digits, so minivl has one dataset it
# did not generate. CLIP's zero-shot demo (S16) captions them "a photo of the
# digit seven."; the VAE recap of DALL-E (S20, `notebooks/09_dalle.py`) encodes them.
# Splits are seeded.

# %%
digits = load_digits("train", size=16, interpolation="bilinear")
print(len(digits), "training digits, labels", np.bincount(digits.labels))
image_grid(digits.images[:8], captions=digits.captions()[:8], panel_size=1.2)

# %% [markdown]
# ## Batching and padding
#
# `DataLoader` shuffles with a fresh seeded order each epoch and pads token-id
# lists on the right, with a mask that is True on real tokens.

# %%
texts = world.captions(scenes)
vocab = {w: i + 1 for i, w in enumerate(sorted({w for t in texts for w in split_words(t)}))}
tokens = [[vocab[w] for w in split_words(t)] for t in texts]
loader = DataLoader({"images": images, "tokens": tokens}, batch_size=4, pad={"tokens": 0}, seed=0)
batch = next(iter(loader))
print(batch["images"].shape, batch["tokens"].shape)
print(batch["tokens_mask"].astype(int))
