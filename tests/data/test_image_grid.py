"""minivl.viz.image_grid: a Figure with one image per panel, captions and boxes, under Agg."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from minivl.data import ShapesWorld
from minivl.viz import image_grid


def test_image_grid_draws_images_captions_and_boxes():
    world = ShapesWorld(seed=0)
    scenes = world.scenes(5)
    fig = image_grid(
        world.render(scenes), world.captions(scenes), boxes=[s.boxes for s in scenes],
        box_labels=[[o.name for o in s.objects] for s in scenes], ncols=3,
    )  # fmt: skip
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 6 and sum(len(ax.images) for ax in axes) == 5
    assert [len(ax.patches) for ax in axes[:5]] == [len(s) for s in scenes]
    fig.canvas.draw()  # renders under Agg without a display
    with pytest.raises(ValueError, match="captions"):
        image_grid(world.render(scenes), ["one caption"])
