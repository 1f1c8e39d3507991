"""ViLBERT pictures (minivl/viz/vilbert.py): the word -> region attention read from
a co-attention block, and that both figures draw what they are given."""

import numpy as np
import pytest

import minivl as mv
from minivl.models.vilbert import LateFusion, ViLBERT, ViLBERTConfig
from minivl.viz.vilbert import co_attention_figure, masked_region_figure, word_region_attention

CONFIG = ViLBERTConfig(vocab_size=30, max_len=8, text_dim=8, text_heads=2, text_mlp_dim=16, feat_dim=4,
                       visual_dim=8, visual_heads=2, visual_mlp_dim=16, co_dim=8, co_heads=2, pool_dim=4,
                       n_region_classes=36, dropout=0.0)


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, (2, 5))
    text_mask = np.ones((2, 5), bool)
    region_mask = np.array([[True, True, True, False], [True, True, True, True]])
    return ids, text_mask, rng.standard_normal((2, 4, 4)), rng.random((2, 4, 5)), region_mask


def test_word_region_attention_is_the_text_halfs_weights_averaged_over_heads():
    mv.manual_seed(0)
    model = ViLBERT(CONFIG)
    weights = word_region_attention(model, *_inputs(), layer=0)
    assert weights.shape == (2, 5, 4) and model.training  # mode restored
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[0, :, 3] == 0)  # the padded region
    with pytest.raises(ValueError, match="no co-attention"):
        word_region_attention(LateFusion(CONFIG), *_inputs())


def test_figures_draw_one_panel_per_word_and_the_top_classes():
    image = np.zeros((32, 32, 3), np.uint8)
    boxes = np.array([[2, 2, 10, 10], [15, 15, 30, 28]])
    weights = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]])
    fig = co_attention_figure(image, boxes, ["a", "red", "circle"], weights)
    assert len(fig.axes) == 3 and len(fig.axes[1].patches) == 2
    assert fig.axes[2].patches[1].get_linewidth() > fig.axes[2].patches[0].get_linewidth() - 1e-9
    assert fig.axes[1].patches[1].get_linewidth() > fig.axes[1].patches[0].get_linewidth()
    with pytest.raises(ValueError, match=r"\(T, 1\+R\)"):
        co_attention_figure(image, boxes, ["a"], weights)
    p = np.full(36, 0.01)
    p[3] = 1 - 0.35
    q = np.full(36, 1 / 36)
    fig = masked_region_figure(q, p, true_class=3, top=5)
    ax = fig.axes[0]
    assert len(ax.patches) == 10 and ax.get_xticklabels()[0].get_text().startswith("*")
    assert f"{np.sum(p * np.log(p / q)):.2f}" in ax.get_title()
