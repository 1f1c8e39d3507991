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
# # 01 · Text transformers: BERT and GPT
#
# Slide **S01, "Evolutions of transformers"**: before vision and language meet,
# the transformer split into two families on text.
#
# * **BERT** (Devlin et al., 2019) is an *encoder*: every token sees every other
#   token, and it learns by filling in masked words.
# * **GPT** (Radford et al., 2018, 2019) is a *decoder*: token *t* sees only the
#   tokens before it, and it learns by predicting the next token, which is also
#   how it writes text.
#
# Both are the same stack of `minivl.nn.TransformerBlock`s; they differ in the
# attention mask, where the LayerNorm sits (post-LN BERT, pre-LN GPT-2) and the
# training objective. Both read text as byte-level BPE tokens.
#
# At laptop scale the "web" is the shapes world's captions
# (`minivl/data/corpus.py`): each document is two true captions of one random
# scene. Models are tiny (about 0.1 M parameters) and train for seconds; the
# `minivl bert train` / `minivl gpt train` commands run longer.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minivl as mv
from minivl import nn
from minivl.data.corpus import build_corpus, collate_pairs, sentence_pairs
from minivl.recipes.bert import fill_mask, train_bert
from minivl.recipes.gpt import train_gpt
from minivl.tokenizers import BPETokenizer

mv.manual_seed(0)
corpus = build_corpus(n_train=1000, n_val=100, vocab_size=400)
print(len(corpus.train), "training documents, e.g.:")
for doc in corpus.train[:3]:
    print("  ", doc)

# %% [markdown]
# ## Byte-pair encoding, merge by merge
#
# GPT-2's tokenizer starts from the 256 byte values and repeatedly merges the
# most frequent adjacent pair into a new token (`minivl/tokenizers/training.py`).
# The first merges glue frequent letter pairs; after enough of them every
# caption word is a single token, its leading space included (" circle").

# %%
text = "\n".join(" ".join(doc) for doc in corpus.train)
_ = BPETokenizer().train(text, 256 + 12, progress=False, verbose=True)  # prints the first 12 merges

# %%
sentence = " ".join(corpus.val[0])
for merges in (0, 10, 40, len(corpus.tokenizer.merges)):
    tok = BPETokenizer().train(text, 256 + merges, progress=False)
    print(f"{merges:4d} merges, {len(tok.encode(sentence)):3d} tokens: {tok.visualise(sentence)}")

# %% [markdown]
# ## Two attention masks
#
# BERT masks only the padding: in a batch, a short pair is padded with [PAD]
# and no token may attend to those positions. GPT adds the causal mask: row t
# (the query) has zeros to the right of column t. These are the `allowed`
# matrices `scaled_dot_product_attention` builds (`key_padding_mask`, `causal`).

# %%
tok = corpus.tokenizer
pairs = sentence_pairs(corpus.val[:2], tok)
batch = collate_pairs(pairs, corpus.special("[PAD]"))
row = int(np.argmin(batch["key_padding_mask"].sum(1)))  # the padded one
N = batch["ids"].shape[1]
bert_allowed = np.broadcast_to(batch["key_padding_mask"][row], (N, N))
gpt_allowed = np.tril(np.ones((N, N), bool))
labels = [tok.decode([int(i)]) for i in batch["ids"][row]]

fig, axes = plt.subplots(1, 2, figsize=(11, 5))
for ax, allowed, title in ((axes[0], bert_allowed, "BERT: padding mask"),
                           (axes[1], gpt_allowed, "GPT: causal mask")):
    ax.imshow(allowed, cmap="Greys_r", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.set_xticks(range(N), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(N), labels, fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## BERT: masked language modelling
#
# Each batch is corrupted afresh by `mask_tokens`: 15% of the non-special
# tokens are chosen; of those 80% become [MASK], 10% a random token and 10%
# stay unchanged; the loss is the cross-entropy at the chosen positions only.
# Accuracy is measured on one fixed corruption of the validation pairs. Many
# blanks are genuinely open (which colour? which shape?) unless the other
# sentence of the pair names them, so the ceiling is well below 100%.

# %%
bert = train_bert(corpus, steps=150, batch_size=64, eval_every=25, progress=False)
m = bert["metrics"]
print(f"MLM accuracy {m['mlm_accuracy_start']:.3f} at step 0 -> {m['mlm_accuracy']:.3f} "
      f"after {m['steps']} steps ({m['train_seconds']:.0f} s)")

# %% [markdown]
# What has it learned? Blanks that the sentence's template decides come first.
# A blank that only the *other* sentence of the pair can answer (which shape?)
# needs attention that copies across the [SEP]; this short run has not learned
# that, and neither has the 600-step `minivl bert train` (0.58 accuracy overall,
# with a shape word, but not yet the right one, in the last example).

# %%
for a, b in (("the image [MASK] one circle and one square.", None),
             ("a picture [MASK] a little blue ring.", None),
             ("a large yellow diamond.", "one [MASK] in the image.")):
    guesses = fill_mask(bert["model"], tok, a, b, top=3)[0]
    print(f"{a!r} + {b!r}:" if b else f"{a!r}:", ", ".join(f"{t!r} {p:.2f}" for t, p in guesses))

# %% [markdown]
# BERT learns from the 15% of positions it masks; GPT, next, learns from every
# position of every window, which is one reason it learns faster per step
# (the observation behind ELECTRA, Clark et al., 2020).

# %% [markdown]
# ## GPT: next-token prediction
#
# The training stream is `doc <|endoftext|> doc <|endoftext|> ...`, cut into
# random windows; the loss at every position is the cross-entropy of the next
# token. Perplexity, exp(loss), starts near the vocabulary size (a uniform
# guess) and falls towards the few choices a caption really leaves open.

# %%
gpt = train_gpt(corpus, steps=100, batch_size=16, block_size=32, eval_every=20, progress=False)
m = gpt["metrics"]
print(f"validation perplexity {m['val_perplexity_start']:.0f} at step 0 -> {m['val_perplexity']:.2f} "
      f"after {m['steps']} steps ({m['train_seconds']:.0f} s)")
print("\nsamples at step 0:")
for s in gpt["samples_start"][:3]:
    print("  ", repr(s))
print(f"samples at step {m['steps']}:")
for s in gpt["samples_end"]:
    print("  ", repr(s))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
evals = bert["history"].evals
axes[0].plot([e["step"] for e in evals], [e["mlm_accuracy"] for e in evals], "o-")
axes[0].set(title="BERT: validation MLM accuracy", xlabel="step")
evals = gpt["history"].evals
axes[1].semilogy([e["step"] for e in evals], [e["val_perplexity"] for e in evals], "o-")
axes[1].set(title="GPT: validation perplexity", xlabel="step")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What the trained models attend to
#
# The same two masks, now as learned attention weights (layer 1, averaged over
# heads), recorded on the way with `nn.record`. BERT's padded columns are
# exactly zero; GPT's upper triangle is exactly zero.

# %%
ids = batch["ids"][row: row + 1]
with nn.record(bert["model"].eval()) as bert_rec:
    bert["model"](ids, batch["segment_ids"][row: row + 1], batch["key_padding_mask"][row: row + 1])
gpt_model = gpt["model"].eval()
gpt_ids = np.asarray([[corpus.special("<|endoftext|>"), *tok.encode(" ".join(corpus.val[row]))]])
with nn.record(gpt_model) as gpt_rec:
    gpt_model(gpt_ids)
bert_w, gpt_w = bert_rec.weights, gpt_rec.weights
gpt_labels = [tok.decode([int(i)]) for i in gpt_ids[0]]
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
for ax, w, names, title in ((axes[0], bert_w, labels, "BERT attention"),
                            (axes[1], gpt_w, gpt_labels, "GPT attention")):
    ax.imshow(w[0].data[0].mean(axis=0), cmap="viridis")  # layer 1, mean over heads: (N, N)
    ax.set_title(title)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Generation with a key/value cache
#
# Sampling feeds each new token back in. Without a cache every step recomputes
# the keys and values of the whole prefix; with one (`cache` dicts in
# `minivl.nn.MultiHeadAttention`) each step only processes the newest token,
# and the causal mask allows queries to be fewer than keys. The tokens are the
# same either way, for greedy decoding and for seeded sampling alike.

# %%
prompt = np.asarray([[corpus.special("<|endoftext|>"), *tok.encode("a red")]])
for options in (dict(temperature=0.0), dict(temperature=0.8, top_k=10)):
    with_cache = gpt_model.generate(prompt, 30, use_cache=True, generator=np.random.default_rng(1), **options)
    without = gpt_model.generate(prompt, 30, use_cache=False, generator=np.random.default_rng(1), **options)
    print(options, "identical:", np.array_equal(with_cache, without), "|", repr(tok.decode(with_cache[0, 1:])))

# %% [markdown]
# **How this differs from the papers.** Sizes are tiny (2 layers, width 64,
# vocabulary 400 instead of 12 layers, width 768, vocabulary 30k / 50k); the
# corpus is generated captions instead of books, Wikipedia or WebText; BERT
# here has no next-sentence-prediction objective. The structure (post-LN vs
# pre-LN blocks, 80/10/10 masking, tied output embeddings, GELU variants) is
# the original's, and `tests/models/test_bert.py` / `test_gpt.py` check it
# against Hugging Face's `BertForMaskedLM` and `GPT2LMHeadModel`.
