"""Plots for the notebooks and the tour report (matplotlib, Agg-safe)."""

from minivl.viz.images import image_grid

__all__ = ["image_grid"]
