"""Plots for the notebooks and the tour report (matplotlib, Agg-safe); each
function returns a ``matplotlib.figure.Figure``."""

from minivl.viz.attention import attention_heads_figure, attention_rollout_figure, position_similarity_figure
from minivl.viz.clip import embedding_pca, similarity_heatmap, training_curves, zero_shot_bars
from minivl.viz.images import image_grid
from minivl.viz.windows import swin_windows_figure

__all__ = [
    "attention_heads_figure", "attention_rollout_figure", "embedding_pca", "image_grid",
    "position_similarity_figure", "similarity_heatmap", "swin_windows_figure", "training_curves", "zero_shot_bars",
]
