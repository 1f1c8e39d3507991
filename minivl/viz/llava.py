"""Pictures for LLaVA (lecture S30, S31, S35): the prompt drawn token by token,
the supervised tokens highlighted."""

from __future__ import annotations

import matplotlib.pyplot as plt

COLOURS = {"system": "#dddddd", "role": "#dddddd", "instruction": "#dddddd", "image": "#9ecae1",
           "scene": "#c6dbef", "answer": "#fdae6b", "end": "#e6550d"}


def label_mask_figure(tokenizer, formatted, width=12, per_row=18):
    """Every token of a formatted conversation as a box: grey = label -100 (system line,
    roles, instructions), blue = image positions (also -100), orange = supervised answer
    tokens, dark orange = the supervised end-of-turn token."""
    n = len(formatted)
    rows = (n + per_row - 1) // per_row
    fig, ax = plt.subplots(figsize=(width, 0.45 * rows + 0.6))
    for i, (t, kind, label) in enumerate(zip(formatted.ids, formatted.kinds, formatted.labels)):
        r, c = divmod(i, per_row)
        text = tokenizer.decode([int(t)]).replace("\n", "\\n").replace(" ", "·")
        ax.add_patch(plt.Rectangle((c, -r), 0.95, 0.8, color=COLOURS[kind]))
        ax.text(c + 0.47, -r + 0.4, text if len(text) <= 9 else text[:8] + "…", ha="center",
                va="center", fontsize=6.5, fontweight="bold" if label != -100 else "normal")
    ax.set_xlim(0, per_row)
    ax.set_ylim(-rows + 0.8, 0.9)
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in ("instruction", "image", "answer", "end")]
    ax.legend(handles, ["label -100 (system, roles, instructions)", "image positions (-100)",
                        "supervised answer", "supervised end of turn"], loc="upper center",
              bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7, frameon=False)
    ax.set_title("LLaVA's training sequence: the loss covers only the orange tokens", fontsize=9)
    fig.tight_layout()
    return fig
