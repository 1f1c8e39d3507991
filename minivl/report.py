"""A run folder with a Markdown report and its plots (``minivl tour``, and any
``minivl <model> train`` that is asked for one).

    report = Report("runs/tour-2026-11-28")
    report.section("CLIP", "Zero-shot on held-out pairs ...")
    report.table({"zero-shot top-1": 0.93, "R@1": 0.85})
    report.figure(fig, "clip_similarity.png", "Image-text similarities")
    report.write()
"""

from __future__ import annotations

import json
import time
from pathlib import Path


class Report:
    def __init__(self, folder, title="minivl report"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lines = [f"# {title}", "", f"_Written {time.strftime('%Y-%m-%d %H:%M:%S')}._", ""]
        self.results: dict[str, dict] = {}

    def section(self, title, text=""):
        self.lines += [f"## {title}", ""] + ([text, ""] if text else [])

    def text(self, text):
        self.lines += [text, ""]

    def table(self, metrics: dict, name: str | None = None):
        """A two-column table of figures (floats shown to 4 significant digits)."""
        if name:
            self.results[name] = dict(metrics)
        self.lines += ["| figure | value |", "| --- | --- |"]
        for k, v in metrics.items():
            shown = f"{v:.4g}" if isinstance(v, float) else str(v)
            self.lines.append(f"| {k} | {shown} |")
        self.lines.append("")

    def figure(self, fig, filename, caption=""):
        """Save a matplotlib figure into the folder and link it."""
        import matplotlib.pyplot as plt

        path = self.folder / filename
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.lines += [f"![{caption or filename}]({filename})", ""]
        if caption:
            self.lines += [f"_{caption}_", ""]
        return path

    def write(self):
        (self.folder / "report.md").write_text("\n".join(self.lines), encoding="utf-8")
        (self.folder / "results.json").write_text(json.dumps(self.results, indent=2, default=float), encoding="utf-8")
        return self.folder / "report.md"
