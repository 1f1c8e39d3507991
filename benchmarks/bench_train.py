"""One training step (forward, backward, AdamW update) of each lecture model at
tiny scale: minivl on the numpy and numba backends against the *same* model in
PyTorch eager on the CPU, measured side by side in one run.

"The same model" is literal: each Hugging Face model (CLIPModel, GPT2LMHeadModel,
BertForMaskedLM, ViTForImageClassification) is built from a tiny config, its
weights are loaded into minivl with ``from_hf``, and the two losses are checked
equal before anything is timed. The DALL-E prior and LLaVA's stage-2 step have
GPT-2 bodies: their twins are a GPT2LMHeadModel with the loss written out in
torch (``dalle_case``, ``llava_case``). ViLBERT has no Hugging Face twin (its
co-attention layers are its own): ``torch_vilbert`` is one written in plain
torch (nn.Linear, nn.LayerNorm, F.scaled_dot_product_attention, erf GELU)
under minivl's parameter names, so the minivl model's ``state_dict()`` loads
into it by name, and ``vilbert_case`` times the recipe's pretraining step
(masked words + masked regions + alignment) with it.
tests/test_bench_cases.py holds these twins to the same loss and gradients.

    python benchmarks/bench_train.py [--repeats 15] [--threads 1 2] [--models clip gpt ...] [--profile]

Prints minivl / torch time ratios (lower is better; PERF.md's target is <= 0.8)
and saves benchmarks/results/train_cpu.json, with the load average of the
machine before and after. Timings are medians of interleaved rounds (a block of
numpy steps, of numba steps, of torch steps, then again in rotated order), so
a busy machine slows all three alike rather than whichever ran last.
``--profile`` adds the per-op breakdown of each step (``op_profile.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script in it runs
import minivl as mv
from minivl.optim import AdamW

RESULTS = Path(__file__).resolve().parent / "results" / "train_cpu.json"


def numpy_state(hf_model):
    return {k: v.detach().numpy().copy() for k, v in hf_model.state_dict().items()}


# --------------------------------------------------------------------------- the models
# Each case returns (hf_model, minivl_model, torch_loss(*torch_inputs), minivl_loss(*minivl_inputs),
# torch_inputs, minivl_inputs): the inputs apart, so bench_train_gpu.py can move them to the GPU.


def clip_case(rng, batch=128):
    import torch
    import transformers

    from minivl.losses import info_nce
    from minivl.models.clip import CLIP

    text = dict(vocab_size=320, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=32, eos_token_id=2)
    vision = dict(image_size=48, patch_size=16, hidden_size=64, intermediate_size=256,
                  num_hidden_layers=2, num_attention_heads=4)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)
    hf = transformers.CLIPModel(config)
    ours = CLIP.from_hf(numpy_state(hf), config.to_dict()).train()
    pixels = rng.standard_normal((batch, 3, 48, 48)).astype(np.float32)  # minivl clip train's size
    ids = rng.integers(3, 318, (batch, 16))
    ids[:, -1] = 319  # the end-of-text id, the largest
    tp, ti = torch.tensor(pixels), torch.tensor(ids)
    return (hf, ours, lambda ti, tp: hf(input_ids=ti, pixel_values=tp, return_loss=True).loss,
            lambda pixels, ids: info_nce(ours.encode_image(pixels), ours.encode_text(ids), ours.logit_scale),
            (ti, tp), (pixels, ids))


def gpt_case(rng, batch=32, length=48):
    import torch
    import transformers

    from minivl.models.gpt import GPT

    config = transformers.GPT2Config(vocab_size=400, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(config)
    ours = GPT.from_hf(numpy_state(hf), config).train()
    ids = rng.integers(0, 400, (batch, length + 1))
    ti = torch.tensor(ids)
    return hf, ours, lambda ti: hf(input_ids=ti, labels=ti).loss, lambda ids: ours.loss(ids), (ti,), (ids,)


def bert_case(rng, batch=32, length=32):
    import torch
    import transformers

    from minivl.models.bert import BERT, mlm_loss

    config = transformers.BertConfig(vocab_size=400, hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=256,
                                     max_position_embeddings=64, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    hf = transformers.BertForMaskedLM(config)
    ours = BERT.from_hf(numpy_state(hf), config).train()
    ids = rng.integers(5, 400, (batch, length))
    labels = np.where(rng.random((batch, length)) < 0.15, ids, -100)
    ti, tl = torch.tensor(ids), torch.tensor(labels)
    return (hf, ours, lambda ti, tl: hf(input_ids=ti, labels=tl).loss,
            lambda ids, labels: mlm_loss(ours.mlm_logits(ids), labels), (ti, tl), (ids, labels))


def vit_case(rng, batch=64):
    import torch
    import transformers

    from minivl import functional as F
    from minivl.models.vit import ViT

    config = transformers.ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=64,
                                    num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=256, num_labels=10,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf = transformers.ViTForImageClassification(config)
    ours = ViT.from_hf(numpy_state(hf), config.to_dict()).train()
    pixels = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    tp, tl = torch.tensor(pixels), torch.tensor(labels)
    return (hf, ours, lambda tp, tl: hf(pixel_values=tp, labels=tl).loss,
            lambda pixels, labels: F.cross_entropy(ours(pixels), labels), (tp, tl), (pixels, labels))


def dalle_case(rng, batch=8):
    """The DALL-E prior (S22, S26) at the recipe's size: a 16-token caption, <soi> and a 16 x 16
    grid of codes (273 positions). Its body is GPT-2's, so the twin is a GPT2LMHeadModel with an
    untied head, the loss written out: 1/8 text + 7/8 image cross-entropy over each position's
    own slice of the head."""
    import torch
    import transformers

    from minivl.models.dalle import DALLE
    from minivl.models.gpt import HF_RULES
    from minivl.models.hf import Rule, load_hf

    ours = DALLE(text_vocab=320, text_len=16, image_vocab=256, grid_h=16, grid_w=16, dim=64, depth=4,
                 num_heads=4)
    config = transformers.GPT2Config(vocab_size=ours.vocab_size, n_positions=ours.max_len, n_embd=64,
                                     n_layer=4, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     tie_word_embeddings=False)
    hf = transformers.GPT2LMHeadModel(config)
    rules = [r for r in HF_RULES if r.source != "lm_head.weight"] + [Rule("lm_head.weight", "head.weight")]
    ours = load_hf(ours, numpy_state(hf), rules).train()
    text = ours.pad_text([rng.integers(0, 320, rng.integers(4, 17)) for _ in range(batch)])
    ids = ours.stream(text, rng.integers(0, 256, (batch, 16, 16)))  # (B, 273)
    L, soi, first_code = 16, ours.soi, ours.image_start

    def torch_loss(ti):
        h = hf.transformer(input_ids=ti[:, :-1]).last_hidden_state  # (B, L + n, D)
        w = hf.lm_head.weight
        text_logits = h[:, :L - 1] @ w[:soi].T
        image_logits = h[:, L:] @ w[first_code:].T
        ce = torch.nn.functional.cross_entropy
        return (ce(text_logits.flatten(0, 1), ti[:, 1:L].flatten()) / 8
                + 7 * ce(image_logits.flatten(0, 1), (ti[:, L + 1:] - first_code).flatten()) / 8)

    return hf, ours, torch_loss, lambda ids: ours.loss(ids), (torch.tensor(ids),), (ids,)


def llava_case(rng, batch=32, length=96):
    """LLaVA's stage-2 step (S35): cached patch features of the frozen eye -> the projector ->
    a GPT reading them in its <image> positions; the loss covers the answer tokens only
    (labels -100 elsewhere). The twin: a GPT2LMHeadModel fed ``inputs_embeds`` and a torch Linear."""
    import torch
    import transformers

    from minivl.models.gpt import GPT
    from minivl.models.llava import LLaVA

    config = transformers.GPT2Config(vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    gpt = transformers.GPT2LMHeadModel(config)
    proj = torch.nn.Linear(64, 64)
    ours = LLaVA(vocab_size=512, max_len=128, dim=64, depth=2, num_heads=4, vision_dim=64)
    ours.lm.load_state_dict(GPT.from_hf(numpy_state(gpt), config).state_dict())
    ours.projector.load_state_dict({"fc1.weight": proj.weight.detach().numpy().copy(),
                                    "fc1.bias": proj.bias.detach().numpy().copy()})
    ours.train()
    N, start = ours.config.num_image_tokens, 4
    ids = rng.integers(2, 512, (batch, length))
    ids[:, start:start + N] = ours.config.image_token_id
    labels = np.where(rng.random((batch, length)) < 0.4, ids, -100)
    labels[:, :start + N] = -100
    features = rng.standard_normal((batch, N, 64)).astype(np.float32)
    hf = torch.nn.ModuleDict({"gpt": gpt, "projector": proj})  # what the optimizer updates

    def torch_loss(ti, tl, tf):
        tokens = gpt.transformer.wte(ti)  # (B, T, D)
        x = torch.cat([tokens[:, :start], proj(tf), tokens[:, start + N:]], dim=1)
        logits = gpt(inputs_embeds=x).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tl[:, 1:].flatten(), ignore_index=-100)

    return (hf, ours, torch_loss, lambda ids, labels, features: ours.loss(features, ids, labels),
            (torch.tensor(ids), torch.tensor(labels), torch.tensor(features)), (ids, labels, features))


# ViLBERT (S03-S11) has no Hugging Face twin: its twin is written here in plain torch, module by
# module under minivl's parameter names, so ``load_state_dict(ours.state_dict())`` copies every
# weight by name (strict: a missing or extra name fails).


def _torch_block(dim, heads, mlp_dim, kv_dim=None, attn_dim=None, eps=1e-12):
    """minivl's post-LN ``TransformerBlock`` in torch: LN(x + Attn(x, context)); LN(x + MLP(x)),
    with an erf GELU; ``context`` (another stream, ``kv_dim`` wide) gives the keys and values."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads
            self.ln_1, self.ln_2 = nn.LayerNorm(dim, eps), nn.LayerNorm(dim, eps)
            self.attn = nn.Module()
            self.attn.q_proj = nn.Linear(dim, attn_dim or dim)
            self.attn.k_proj = nn.Linear(kv_dim or dim, attn_dim or dim)
            self.attn.v_proj = nn.Linear(kv_dim or dim, attn_dim or dim)
            self.attn.out_proj = nn.Linear(attn_dim or dim, dim)
            self.mlp = nn.Module()
            self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)

        def forward(self, x, key_mask, context=None):
            """``x (B, N, dim)``; ``key_mask (B, Nk)`` True for the real keys of ``context`` (default x)."""
            context = x if context is None else context
            a, f = self.attn, torch.nn.functional
            split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, N, hd)
            out = f.scaled_dot_product_attention(split(a.q_proj(x)), split(a.k_proj(context)),
                                                 split(a.v_proj(context)), attn_mask=key_mask[:, None, None, :])
            x = self.ln_1(x + a.out_proj(out.transpose(1, 2).flatten(2)))  # (B, N, dim)
            return self.ln_2(x + self.mlp.fc2(f.gelu(self.mlp.fc1(x))))

    return Block()


def torch_vilbert(c, term_weights):
    """A torch ``nn.Module`` computing the pretraining loss of minivl's ``ViLBERT(c)`` (dropout
    off): ``forward(ids, text_mask, word_labels, feats, locs, region_mask, region_chosen, det_probs,
    aligned)`` -> masked words (cross-entropy) + masked regions (KL(detector || predicted) over the
    chosen regions) + alignment (cross-entropy on pooled_text * pooled_image), weighted by
    ``term_weights`` (minivl/recipes/vilbert.py::pretraining_losses)."""
    import torch
    from torch import nn

    f = torch.nn.functional
    blocks = lambda dim, depth, heads, mlp: nn.ModuleList(_torch_block(dim, heads, mlp, eps=c.eps)
                                                          for _ in range(depth))

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            e = self.text_embeddings = nn.Module()
            e.token, e.position = nn.Embedding(c.vocab_size, c.text_dim), nn.Embedding(c.max_len, c.text_dim)
            e.segment, e.ln = nn.Embedding(c.type_vocab_size, c.text_dim), nn.LayerNorm(c.text_dim, c.eps)
            v = self.visual_embeddings = nn.Module()
            v.feature, v.location = nn.Linear(c.feat_dim, c.visual_dim), nn.Linear(5, c.visual_dim)
            v.ln = nn.LayerNorm(c.visual_dim, c.eps)
            v.register_buffer("location_mean", torch.zeros(5))
            v.register_buffer("location_scale", torch.ones(5))
            self.text_blocks = blocks(c.text_dim, c.text_depth, c.text_heads, c.text_mlp_dim)
            self.visual_blocks = blocks(c.visual_dim, c.visual_depth, c.visual_heads, c.visual_mlp_dim)
            self.co_blocks = nn.ModuleList()
            for _ in c.co_attention_at:  # words query regions; regions query words
                co = nn.Module()
                co.text = _torch_block(c.text_dim, c.co_heads, c.text_mlp_dim, c.visual_dim, c.co_dim, c.eps)
                co.visual = _torch_block(c.visual_dim, c.co_heads, c.visual_mlp_dim, c.text_dim, c.co_dim, c.eps)
                self.co_blocks.append(co)
            self.text_pooler = nn.Linear(c.text_dim, c.pool_dim)
            self.visual_pooler = nn.Linear(c.visual_dim, c.pool_dim)
            self.alignment = nn.Linear(c.pool_dim, 2)
            heads = (("mlm", c.text_dim, c.vocab_size), ("region_head", c.visual_dim, c.n_region_classes))
            for name, width, classes in heads:  # dense -> GELU -> LayerNorm -> decoder
                head = nn.Module()
                head.dense, head.ln, head.decoder = (nn.Linear(width, width), nn.LayerNorm(width, c.eps),
                                                     nn.Linear(width, classes))
                setattr(self, name, head)
            self.mlm.decoder.weight = e.token.weight  # tied, as BERT's

        def forward(self, ids, text_mask, word_labels, feats, locs, region_mask, region_chosen, det_probs, aligned):
            e, v = self.text_embeddings, self.visual_embeddings
            positions = torch.arange(ids.shape[1], device=ids.device)
            text = e.ln(e.token(ids) + e.position(positions) + e.segment(torch.zeros_like(ids)))  # (B, T, Dt)
            z = (locs - v.location_mean) * v.location_scale
            z = c.location_clip * torch.tanh(z / c.location_clip) if c.location_clip else z
            visual = v.ln(v.feature(feats) + v.location(z))  # (B, 1+R, Dv)
            t_done = v_done = 0
            for (t, s), co in zip(c.co_attention_at, self.co_blocks):
                for block in self.text_blocks[t_done:t]:
                    text = block(text, text_mask)
                for block in self.visual_blocks[v_done:s]:
                    visual = block(visual, region_mask)
                # both halves read the other stream as it was before the block
                text, visual = co.text(text, region_mask, visual), co.visual(visual, text_mask, text)
                t_done, v_done = t, s
            for block in self.text_blocks[t_done:]:
                text = block(text, text_mask)
            for block in self.visual_blocks[v_done:]:
                visual = block(visual, region_mask)
            fused = f.relu(self.text_pooler(text[:, 0])) * f.relu(self.visual_pooler(visual[:, 0]))  # (B, P)
            head = lambda h, x: h.decoder(h.ln(f.gelu(h.dense(x))))
            words = head(self.mlm, text)  # (B, T, V)
            log_q = f.log_softmax(head(self.region_head, visual), dim=-1)  # (B, 1+R, classes)
            kl = (torch.xlogy(det_probs, det_probs) - det_probs * log_q).sum(-1)  # (B, 1+R)
            chosen = region_chosen.to(kl.dtype)
            terms = {"masked_words": f.cross_entropy(words.flatten(0, 1), word_labels.flatten(), ignore_index=-100),
                     "masked_regions": (kl * chosen).sum() / chosen.sum().clamp(min=1.0),
                     "alignment": f.cross_entropy(self.alignment(fused), aligned)}
            return sum(term_weights[k] * terms[k] for k in terms)

    return Twin()


def vilbert_case(rng, batch=64):
    """ViLBERT's pretraining step (S07-S09) at the recipe's size (``pretrain_vilbert``: batch 64,
    ``ViLBERTConfig()`` with the tokenizer's 400 ids, the detector's 32-d standardised features and
    36 classes; captions of 5-20 tokens, [IMG] + up to 3 regions), dropout off as in the other cases.
    The loss is the recipe's (``pretraining_losses`` / ``pretraining_loss``: masked words + masked
    regions + 5 x alignment) with the masks drawn once here (``mask_tokens``, ``mask_regions``).
    The twin is ``torch_vilbert``, holding the minivl model's weights by name."""
    import torch

    from minivl.models.bert import IGNORE_INDEX, mask_tokens
    from minivl.models.vilbert import ViLBERT, ViLBERTConfig
    from minivl.recipes.vilbert import TERM_WEIGHTS, mask_regions, pretraining_loss, pretraining_losses

    ours = ViLBERT(ViLBERTConfig(vocab_size=400, feat_dim=32, n_region_classes=36, dropout=0.0)).train()
    twin = torch_vilbert(ours.config, TERM_WEIGHTS)
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    pad, cls, sep, mask = 396, 397, 398, 399  # the BERT tokenizer's special ids
    lengths = rng.integers(5, 21, batch)  # [CLS] caption [SEP]
    ids = np.full((batch, lengths.max()), pad, np.int64)  # (B, T)
    for row, n in zip(ids, lengths):
        row[:n] = [cls, *rng.integers(0, 395, n - 2), sep]
    text_mask = ids != pad
    aligned = rng.permutation(batch) % 2  # half the captions are another scene's
    first = int(np.argmax(aligned))  # a matching pair, given one masked word and region below
    inputs, word_labels = mask_tokens(ids, [pad, cls, sep], 400, mask, rng)
    word_labels[first, 1] = ids[first, 1]
    word_labels[aligned == 0] = IGNORE_INDEX  # the masked terms read the matching pairs only
    R = 3
    region_mask = np.arange(1 + R) < 1 + rng.integers(1, R + 1, batch)[:, None]  # (B, 1+R)
    real = region_mask[..., None].copy()
    real[:, 0] = False
    feats = np.where(real, rng.standard_normal((batch, 1 + R, 32)), 0.0)
    feats[:, 0] = feats[:, 1:].sum(1) / real[:, 1:, 0].sum(1, keepdims=True)  # [IMG]: the regions' mean
    corner = rng.uniform(0, 0.7, (batch, 1 + R, 2))
    size = rng.uniform(0.1, 0.3, (batch, 1 + R, 2))
    locs = np.concatenate([corner, corner + size, size.prod(-1, keepdims=True)], -1) * real
    locs[:, 0] = [0, 0, 1, 1, 1]
    chosen, zeroed = mask_regions(region_mask, rng)
    chosen[first, 1] = True
    feats = np.where(zeroed[..., None], 0.0, feats).astype(np.float32)
    logits = 2 * rng.standard_normal((batch, 1 + R, 36))
    det_probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True) * real).astype(np.float32)
    minivl_in = (inputs, text_mask, word_labels, feats, locs.astype(np.float32), region_mask,
                 chosen & (aligned == 1)[:, None], det_probs, aligned)
    keys = ("ids", "text_mask", "word_labels", "feats", "locs", "region_mask", "region_chosen", "det_probs",
            "aligned")

    def minivl_loss(*arrays):
        terms, _ = pretraining_losses(ours, dict(zip(keys, arrays)))
        return pretraining_loss(terms)

    return twin, ours, twin, minivl_loss, tuple(torch.tensor(a) for a in minivl_in), minivl_in


CASES = {"clip": (clip_case, "minivl.models.clip"), "gpt": (gpt_case, "minivl.models.gpt"),
         "bert": (bert_case, "minivl.models.bert"), "vit": (vit_case, "minivl.models.vit"),
         "dalle": (dalle_case, "minivl.models.dalle"), "llava": (llava_case, "minivl.models.llava"),
         "vilbert": (vilbert_case, "minivl.models.vilbert")}


# --------------------------------------------------------------------------- timing


def steppers(name):
    """Three step() functions (numpy, numba, torch) for one model, validated first."""
    import torch

    torch.manual_seed(0)
    mv.manual_seed(0)
    hf, ours, torch_fn, minivl_fn, torch_in, minivl_in = CASES[name][0](np.random.default_rng(0))

    def torch_loss():
        return torch_fn(*torch_in)

    def minivl_loss():
        return minivl_fn(*minivl_in)

    with torch.no_grad():
        expected = float(torch_loss())
    with mv.no_grad():
        got = float(minivl_loss().item())
    if not np.isclose(got, expected, rtol=1e-4, atol=1e-5):
        raise AssertionError(f"{name}: minivl loss {got} != torch loss {expected}; not timing it")
    torch_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
    ours_opt = AdamW(ours.parameters(), lr=1e-4)

    def torch_step():
        torch_opt.zero_grad()
        torch_loss().backward()
        torch_opt.step()

    def minivl_step(backend):
        def step():
            mv.use(backend)
            ours_opt.zero_grad()
            minivl_loss().backward()
            ours_opt.step()
        return step

    return {"numpy": minivl_step("numpy"), "numba": minivl_step("numba"), "torch": torch_step}, got


def interleaved_medians(steps, repeats, rounds=5, warmup=1, settle_s=0.1):
    """Median step time of each contender over ``rounds`` interleaved rounds.

    Each round times every contender in turn (the order rotating from round to
    round) for a short block of ``repeats // rounds`` steps: a busy machine
    slows all contenders alike, while inside a block one framework never runs
    against the other's still-spinning OpenMP threads (Numba's and torch's
    pools spin for a while after each parallel region; ``settle_s`` of sleep
    before each block lets them stop).

    Returns two ``{contender: seconds}``: wall-clock medians and CPU-time
    medians (this process's CPU seconds per step: at one thread nearly immune
    to other processes on the machine; at two it also counts spinning threads).
    """
    names = list(steps)
    times = {k: [] for k in names}
    cpu = {k: [] for k in names}
    per_block = max(1, repeats // rounds)
    for fn in steps.values():  # JIT, allocator and cache warm-up, untimed
        for _ in range(warmup):
            fn()
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(settle_s)
            steps[k]()  # one untimed step: the block starts warm
            for _ in range(per_block):
                t0, c0 = time.perf_counter(), time.process_time()
                steps[k]()
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    mv.use("numpy")
    return ({k: statistics.median(v) for k, v in times.items()},
            {k: statistics.median(v) for k, v in cpu.items()})


def set_threads(n):
    """Every contender's thread count: torch, Numba and NumPy's BLAS."""
    import torch
    from threadpoolctl import threadpool_limits

    from minivl.threads import limit_threads

    torch.set_num_threads(n)
    limit_threads(numba=n)  # minivl's choice of Numba threading layer, as its commands make
    threadpool_limits(n)


def numba_layer():
    """The threading layer Numba's parallel kernels ran on (minivl picks ``workqueue``
    unless ``$NUMBA_THREADING_LAYER`` says otherwise; see minivl/threads.py)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel ran
        return None


def profile_rows(steps, repeats=5, top=12):
    """The per-op breakdown (ms per step) of each contender (see op_profile.py)."""
    from op_profile import op_breakdown, torch_breakdown

    out = {b: op_breakdown(steps[b], repeats=repeats, top=top) for b in ("numpy", "numba")}
    out["torch"] = torch_breakdown(steps["torch"], repeats=repeats, top=top)
    mv.use("numpy")
    return out


def print_breakdown(name, threads, prof):
    print(f"\n{name}, {threads} thread(s): ms per step by op (instrumented; totals include timer overhead)")
    for backend_name, ops in prof.items():
        print(f"  {backend_name:5}  total {ops['total']:.1f} ms: " + ", ".join(
            f"{k} {v:.1f}" for k, v in list(ops.items())[1:9]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per contender (split into rounds)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the repeats are split into")
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="thread counts to measure, each for every contender (BLAS, Numba, torch)")
    parser.add_argument("--profile", action="store_true", help="also record the per-op breakdown of each step")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON to write (default {RESULTS})")
    args = parser.parse_args()
    import torch

    from minivl.threads import limit_threads

    # one threading layer for the whole run, the one minivl picks for the largest count:
    # starting Numba's threads here fixes it (a later limit_threads(numba=1) cannot undo it)
    limit_threads(numba=max(args.threads))
    load_before = os.getloadavg()
    rows, profiles = {}, {}
    for name in args.models:
        try:
            importlib.import_module(CASES[name][1])
        except ImportError:
            print(f"{name}: model not in minivl yet, skipped")
            continue
        steps, loss = steppers(name)
        for threads in args.threads:
            set_threads(threads)
            t, c = interleaved_medians(steps, args.repeats, rounds=args.rounds)
            rows.setdefault(name, {"loss": loss})[f"threads_{threads}"] = {
                "seconds": t, "numpy_over_torch": t["numpy"] / t["torch"],
                "numba_over_torch": t["numba"] / t["torch"],
                "cpu_seconds": c, "cpu_numpy_over_torch": c["numpy"] / c["torch"],
                "cpu_numba_over_torch": c["numba"] / c["torch"]}
            if args.profile:
                prof = profile_rows(steps)
                profiles.setdefault(name, {})[f"threads_{threads}"] = prof
                print_breakdown(name, threads, prof)
    print(f"\n{'model':6} {'threads':>7} {'numpy ms':>9} {'numba ms':>9} {'torch ms':>9} "
          f"{'numpy/torch':>12} {'numba/torch':>12} {'(cpu time)':>11}")
    for name, r in rows.items():
        for threads in args.threads:
            rt = r[f"threads_{threads}"]
            s = rt["seconds"]
            print(f"{name:6} {threads:7d} {1e3 * s['numpy']:9.1f} {1e3 * s['numba']:9.1f} "
                  f"{1e3 * s['torch']:9.1f} {rt['numpy_over_torch']:12.2f} {rt['numba_over_torch']:12.2f} "
                  f"{rt['cpu_numpy_over_torch']:5.2f} {rt['cpu_numba_over_torch']:5.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
        "numpy": np.__version__, "threads": args.threads, "numba_threading_layer": numba_layer(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "note": "shared machine: other processes ran during the measurement (see load averages); "
                "ratios are medians of interleaved rounds, so contention slows every contender alike",
        "repeats": args.repeats, "rounds": args.rounds, "results": rows,
        **({"per_op_ms": profiles} if profiles else {}),
    }, indent=2))
    print(f"Numba threading layer: {numba_layer()}; saved {args.out}")


if __name__ == "__main__":
    main()
