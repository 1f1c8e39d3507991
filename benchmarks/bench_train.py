"""One training step (forward, backward, AdamW update) of each lecture model at
tiny scale: minivl on the numpy and numba backends against the *same* model in
PyTorch eager on the CPU, measured side by side in one run.

"The same model" is literal: each Hugging Face model (CLIPModel, GPT2LMHeadModel,
BertForMaskedLM, ViTForImageClassification) is built from a tiny config, its
weights are loaded into minivl with ``from_hf``, and the two losses are checked
equal before anything is timed. Models that do not exist yet are skipped.

    python benchmarks/bench_train.py [--repeats 15] [--threads 1] [--models clip gpt bert vit]

Prints minivl / torch time ratios (lower is better; PERF.md's target is <= 1.0)
and saves benchmarks/results/train_cpu.json. Timings are medians of
interleaved repeats (numpy, numba, torch, numpy, ...), so a busy machine
slows all three alike rather than whichever ran last.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script in it runs
from common import time_cpu

import minivl as mv
from minivl.optim import AdamW

RESULTS = Path(__file__).resolve().parent / "results" / "train_cpu.json"


def numpy_state(hf_model):
    return {k: v.detach().numpy().copy() for k, v in hf_model.state_dict().items()}


# --------------------------------------------------------------------------- the four models
# Each case returns (hf_model, minivl_model, torch_loss(), minivl_loss()).


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
    return (hf, ours, lambda: hf(input_ids=ti, pixel_values=tp, return_loss=True).loss,
            lambda: info_nce(ours.encode_image(pixels), ours.encode_text(ids), ours.logit_scale))


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
    return hf, ours, lambda: hf(input_ids=ti, labels=ti).loss, lambda: ours.loss(ids)


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
    return (hf, ours, lambda: hf(input_ids=ti, labels=tl).loss,
            lambda: mlm_loss(ours.mlm_logits(ids), labels))


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
    return (hf, ours, lambda: hf(pixel_values=tp, labels=tl).loss,
            lambda: F.cross_entropy(ours(pixels), labels))


CASES = {"clip": (clip_case, "minivl.models.clip"), "gpt": (gpt_case, "minivl.models.gpt"),
         "bert": (bert_case, "minivl.models.bert"), "vit": (vit_case, "minivl.models.vit")}


# --------------------------------------------------------------------------- timing


def steppers(name):
    """Three step() functions (numpy, numba, torch) for one model, validated first."""
    import torch

    torch.manual_seed(0)
    mv.manual_seed(0)
    hf, ours, torch_loss, minivl_loss = CASES[name][0](np.random.default_rng(0))
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


def blocked_medians(steps, repeats, warmup=2):
    """Median step time of each contender, timed one contender at a time.

    Timing them in blocks (not interleaved) matters: Numba's and torch's
    OpenMP pools spin for a while after each parallel region, and an
    interleaved loop would time each framework against the other's spinning
    threads.
    """
    medians = {k: time_cpu(fn, repeats=repeats, warmup=warmup) for k, fn in steps.items()}
    mv.use("numpy")
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every contender (BLAS, Numba, torch); 1 is the least "
                             "noisy on a shared machine")
    args = parser.parse_args()
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads)  # NumPy's BLAS

    rows = {}
    for name in args.models:
        try:
            importlib.import_module(CASES[name][1])
        except ImportError:
            print(f"{name}: model not in minivl yet, skipped")
            continue
        steps, loss = steppers(name)
        t = blocked_medians(steps, args.repeats)
        rows[name] = {"seconds": t, "loss": loss,
                      "numpy_over_torch": t["numpy"] / t["torch"],
                      "numba_over_torch": t["numba"] / t["torch"]}
    print(f"{'model':6} {'numpy ms':>9} {'numba ms':>9} {'torch ms':>9} "
          f"{'numpy/torch':>12} {'numba/torch':>12}")
    for name, r in rows.items():
        s = r["seconds"]
        print(f"{name:6} {1e3 * s['numpy']:9.1f} {1e3 * s['numba']:9.1f} {1e3 * s['torch']:9.1f} "
              f"{r['numpy_over_torch']:12.2f} {r['numba_over_torch']:12.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
        "threads": args.threads, "numpy": np.__version__,
        "load_average": os.getloadavg(), "repeats": args.repeats, "results": rows,
    }, indent=2))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
