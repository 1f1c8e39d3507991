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
# # 10 · LLaVA: visual instruction tuning (S29–S37)
#
# LLaVA (Liu et al., 2023) gives a language model eyes: a frozen CLIP image
# tower, a projector that writes its patch features into the language
# model's word-embedding space, and instruction data written by a teacher
# that only ever saw captions and boxes. This notebook walks the slides:
#
# - **S29** the three parts (`minivl/models/llava.py`),
# - **S30–S31** the conversation template and the label mask,
# - **S32–S33** the teacher and its three kinds of data,
# - **S34–S35** the two training stages and what each freezes,
# - **S36** evaluation on held-out scenes, beside a text-only baseline,
# - **S37** a chat, streamed token by token with the key/value cache.
#
# In CI the runs are cut to a few steps; the figures quoted in
# `lectures/10-llava.md` come from `results/llava_study.json` (`minivl llava study`).

# %%
# %matplotlib inline
import json
import os
import sys
from pathlib import Path

import numpy as np

import minivl as mv
from minivl.viz import image_grid

CI = os.environ.get("MINIVL_NOTEBOOK_CI") == "1"  # the test runner asks for a short run
mv.manual_seed(0)
RESULTS = Path(mv.__file__).resolve().parents[1] / "results"

# %% [markdown]
# ## S29 · The parts: a frozen CLIP eye, a projector, a language model
#
# The eye is minivl's CLIP image tower, trained on the shapes world
# (`notebooks/04_clip.py`): 48 x 48 pictures, one 16 x 16 patch per grid
# cell, so N = 9 patch tokens. LLaVA reads the hidden states of the
# *penultimate* layer and drops [CLS] (`LLaVA.image_features`, through
# `nn.record`). The language model is minivl's GPT, first pretrained on the
# project's plain text, standing in for Vicuna.

# %%
from minivl.models.vision import preprocess
from minivl.recipes.clip import train_clip
from minivl.recipes.llava import STUDY, LLaVAData, build, clip_tower, evaluate, pretrain_lm, train_stage

if CI:
    clip = train_clip("shapes", steps=40, n_train=2000, eval_every=10**9, n_zero_shot=60,
                      n_retrieval=60, progress=False)["model"]
else:
    clip = clip_tower()  # cached under $MINIVL_CACHE, trained once
# conversation samples per scene and the kinds' shares as in the study (STUDY;
# `--conversations`, `--no-balance-kinds` change them)
data = LLaVAData(n_train=200 if CI else 2000, n_test=40 if CI else 200, seed=0,
                 conversations=STUDY["conversations"], balance_kinds=STUDY["balance_kinds"])
gpt, lm_metrics = pretrain_lm(data.tokenizer, data.docs, 20 if CI else 100, progress=False)
print(f"GPT pretrained on {len(data.docs):,} plain-text documents: val perplexity "
      f"{lm_metrics['val_perplexity']:.2f}")
model = build(data, clip, gpt, projector="linear", image_position=STUDY["image_position"])
data.compute_features(model)  # the eye never trains: every picture's features, once
print(model.projector, "\nvision parameters frozen:", not any(p.requires_grad for p in model.vision.parameters()))
features = model.image_features(preprocess(data.train_images[:2]))
print("patch features of two pictures:", features.shape, "(B, N, Dv): penultimate layer, [CLS] dropped")

# %% [markdown]
# ## S30–S31 · The template and the label mask
#
# A system line, then `USER: ...` / `ASSISTANT: ...</s>` rounds; the first
# user turn holds `<image>`, expanded to N ids whose embeddings the model
# overwrites with the projected patches. The study puts it after the first
# question (`question\n<image>`, one of LLaVA-Instruct's two placements), so
# the patch positions can attend to the question. The labels are -100
# everywhere but on the answers and their end-of-turn token.

# %%
from minivl.data.llava_format import format_conversation
from minivl.viz.llava import label_mask_figure

turns = [("What colour is the circle?", "The circle is red."),
         ("Is there a square?", "No, there is no square in the image.")]
f = format_conversation(data.tokenizer, turns, model.config.num_image_tokens,
                        image_position=model.config.image_position)
print(data.tokenizer.decode(f.ids))
label_mask_figure(data.tokenizer, f)

# %% [markdown]
# ## S32–S33 · The teacher's data
#
# GPT-4 saw captions and boxes; our teacher reads the scene's ground truth
# and writes conversations, detailed descriptions and complex reasoning
# (`minivl/data/instructions.py`).

# %%
image_grid(data.train_images[:3], captions=[", ".join(o.name for o in s.objects)
                                            for s in data.train_scenes[:3]], panel_size=2.0)
for item in data.items[:3]:
    print(f"[{item.kind}]")
    for q, a in item.turns:
        print(f"  USER: {q}\n  ASSISTANT: {a}")
print(json.dumps(data.statistics(), indent=1))

# %% [markdown]
# LLaVA's prompt to GPT-4 held a few hand-written *seed examples* per kind:
# each a symbolic view (captions, boxes as fractions of the side) and the
# response wanted. Here is that chat for our first training scene; our rules
# stand in for GPT-4's answer, and a test holds every seed to the rules'
# wording (`minivl/data/llava_seeds.py`).

# %%
from minivl.data.captions import sample_caption
from minivl.data.llava_seeds import teacher_messages

rng = np.random.default_rng(0)
scene = data.train_scenes[0]
captions = [sample_caption(scene, rng, (kind,)).text for kind in ("list", "count")]
for m in teacher_messages(scene, captions, "detail"):
    print(f"--- {m['role']}\n{m['content']}")

# %% [markdown]
# ## S34 · Stage 1: feature alignment
#
# Only the projector trains, on `<image>` + caption pairs. The language model
# and the eye stay exactly as they were.

# %%
lm_before = {k: v.copy() for k, v in model.lm.state_dict().items()}
h1 = train_stage(model, data, 1, 10 if CI else 100, progress=False)
print(f"stage 1: {model.num_parameters(trainable_only=True):,} trainable parameters; loss "
      f"{h1.loss[0]:.2f} -> {np.mean(h1.loss[-5:]):.2f}")
print("LM unchanged bit for bit:", all(np.array_equal(lm_before[k], v) for k, v in model.lm.state_dict().items()))

# %% [markdown]
# ## S35 · Stage 2: end-to-end instruction tuning
#
# The eye stays frozen; the projector and the language model train on the
# teacher's instructions.

# %%
h2 = train_stage(model, data, 2, 20 if CI else 250, progress=False)
print(f"stage 2: {model.num_parameters(trainable_only=True):,} trainable parameters; loss "
      f"{h2.loss[0]:.2f} -> {np.mean(h2.loss[-5:]):.2f}")

# %% [markdown]
# ## S36 · Evaluation on held-out scenes
#
# Short answers are judged against the teacher's own sentence for every
# possible answer, descriptions by the objects they name, reasoning by the
# teacher's unique answer (`minivl/data/llava_eval.py`).

# %%
m = evaluate(model, data, n_per_type=4 if CI else 30, n_describe=6 if CI else 40, n_reason=6 if CI else 40)
print({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
print(m["example"])

# %%
path = RESULTS / "llava_study.json"
if path.exists():
    committed = json.loads(path.read_text())["results"]["mean"]
    print("the committed study (results/llava_study.json), mean of seeds:")
    for row, v in committed.items():
        print(f"  {row:>11}: short answers {v['short_answer']:.1%}, description F1 {v['describe_f1']:.2f}, "
              f"reasoning {v['reasoning']:.1%}")

# %% [markdown]
# ## S37 · A chat
#
# `minivl llava chat --scene-seed 3` runs this loop in a terminal; here a
# scripted conversation goes through the same session: each turn feeds only
# its new tokens to the key/value caches, the answer streams token by token.

# %%
import io

from minivl.recipes.llava_chat import ChatSession

session = ChatSession(model, data.tokenizer, data.test_images[0])
print("the picture holds:", ", ".join(o.name for o in data.test_scenes[0].objects))
session.run(io.StringIO("Describe the image in detail.\nHow many shapes are there?\n/quit\n"), sys.stdout)
