"""The lecture's closing table (S38), filled with minivl's own models and the
figures of their own committed runs (``results/*.json``).

Each row names the model, what it reads, how it is built, what it is trained
to do, what it can do, and one or two measured figures read from the results
file(s) that the named command wrote. A model whose (first) results file is not there
says "not yet run".
``python -m minivl.recipes.summary`` prints the Markdown table; the tour
appends it to its report.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# model, inputs, architecture, objective, what it can do, results file, figures
ROWS = [
    ("BERT", "text", "post-LN encoder, bidirectional", "masked LM (15%, 80/10/10)",
     "fill in words; features for classifiers", "tour_quick.json",
     lambda r: f"MLM accuracy {r['bert']['MLM accuracy']:.2f} (quick tour)"),
    ("GPT", "text", "pre-LN decoder, causal, tied head", "next token",
     "write text, continue prompts (KV cache)", "tour_quick.json",
     lambda r: f"val perplexity {r['gpt']['val perplexity']:.2f} (quick tour)"),
    ("ViT", "image", "patches + [CLS] + pre-LN encoder", "classification",
     "classify images", "tour_quick.json",
     lambda r: f"test accuracy {r['vit_digits']['test accuracy']:.2f} digits, "
               f"{r['vit_shapes']['test accuracy']:.2f} shapes (quick tour)"),
    ("ViLBERT", "image regions + text", "two streams + co-attention", "masked multi-modal + alignment",
     "VQA, retrieval, grounding", "vilbert_pretrain.json",
     lambda r: "held-out alignment {:.2f}, masked words {:.2f} after {} pretraining steps (seed {})".format(
         r["runs"][0]["held_out"]["alignment_accuracy"], r["runs"][0]["held_out"]["masked_word_accuracy"],
         r["runs"][0]["steps"], r["runs"][0]["seed"])),
    ("CLIP", "image, text", "two towers, one embedding space", "symmetric InfoNCE",
     "zero-shot classification, retrieval", "clip_shapes.json",
     lambda r: f"zero-shot top-1 {r['held_out_top1']:.2f} on held-out pairs, "
               f"image->text R@1 {r['image_to_text_R@1']:.2f}"),
    ("ClipCap", "image", "frozen CLIP -> mapping MLP -> GPT prefix", "caption next token",
     "caption images", "clipcap.json",
     lambda r: "attribute match {:.2f}, BLEU-4 {:.2f} (greedy, fine-tuned GPT)".format(
         r["rows"]["finetuned_gpt"]["greedy_attribute_match"], r["rows"]["finetuned_gpt"]["greedy_bleu4"])),
    ("CLIP-guided edit", "image + prompt", "frozen generator (VAE, dVAE) + frozen CLIP",
     "CLIP cosine + closeness to the start, over the latent", "edit a picture with words",
     "clip_edit.json",
     lambda r: "digits read as the prompt's after the edit {:.2f}; shapes recoloured {:.2f}, other objects "
               "kept {:.2f} (seed 0)".format(
         r["runs"]["0"]["digits"]["rows"]["edit, lambda 0.1"]["happened"],
         r["runs"]["0"]["shapes"]["rows"]["edit, lambda 0.003"]["happened"],
         r["runs"]["0"]["shapes"]["rows"]["edit, lambda 0.003"]["kept"])),
    ("DALL-E", "text -> image", "dVAE + decoder over text+image tokens", "ELBO; next token",
     "draw images from text", ("dvae.json", "dalle.json"),
     lambda r: _dalle(*r)),
    ("LLaVA", "image + instruction", "frozen CLIP + projector + GPT", "next token on answers only",
     "answer, describe, reason, chat", "llava_study.json",
     lambda r: "short answers {:.2f}, description F1 {:.2f}, reasoning {:.2f} (stage 2, mean of seeds)".format(
         r["mean"]["stage2"]["short_answer"], r["mean"]["stage2"]["describe_f1"],
         r["mean"]["stage2"]["reasoning"])),
]


def _dalle(dvae, dalle) -> str:
    """Stage 1's PSNR and codes in use; the judged generations of stage 2 when ``dalle.json`` has a run
    (at the recipe's classifier-free guidance scale where the run judged several)."""
    m = dvae["runs"]["0"]["metrics"]
    text = "stage 1: held-out PSNR {:.1f} dB, {} of {} codes used (seed 0)".format(
        m["psnr_test"], m["used_codes"], m["vocab_size"])
    runs = (dalle or {}).get("runs", {})
    if "0" not in runs:
        return text + "; generations not yet judged"
    from minivl.recipes.dalle import GUIDANCE  # the recipe's guidance scale (1: DALL-E's own sampling)

    run = runs["0"]
    by_scale = run.get("evaluation_by_guidance", {})
    g = float(GUIDANCE) if str(float(GUIDANCE)) in by_scale else float(run.get("guidance", 1.0))
    e = by_scale.get(str(g), run["evaluation"])
    scale = f", guidance {g:g}" if g != 1 else ""
    return text + ("; generations correct {:.2f} on held-out captions, {:.2f} on unseen colour-shape pairs "
                   "({:.2f} / {:.2f} CLIP-reranked, seed 0{})").format(
        e["held_out_scenes"]["correct"], e["held_out_pairs"]["correct"],
        e["held_out_scenes"]["correct_rerank"], e["held_out_pairs"]["correct_rerank"], scale)


def figures(name, results_dir=None) -> str:
    """The measured figures of one row, or why there are none."""
    results_dir = Path(results_dir or ROOT / "results")
    for row in ROWS:
        if row[0] == name:
            files = row[5] if isinstance(row[5], tuple) else (row[5],)  # the first one is required
            if not (results_dir / files[0]).exists():
                return "not yet run"
            loaded = [json.loads((results_dir / f).read_text()) if (results_dir / f).exists() else None
                      for f in files]
            loaded = [d.get("results", d) if d else d for d in loaded]  # write_results wraps the figures
            named = ", ".join(f"`results/{f}`" for f, d in zip(files, loaded) if d is not None)
            if row[6] is None:
                return f"see {named}"
            try:
                return row[6](loaded if len(files) > 1 else loaded[0]) + f" ({named})"
            except (KeyError, TypeError):
                return f"see {named}"
    raise ValueError(f"no row named {name!r}")


def markdown_table(results_dir=None) -> str:
    lines = ["| model | inputs | architecture | objective | what it can do | minivl's own run |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, inputs, arch, objective, can, _, _ in ROWS:
        lines.append(f"| {name} | {inputs} | {arch} | {objective} | {can} | {figures(name, results_dir)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
