"""The alignment error split of issue 12 (minivl/recipes/vilbert_alignment_errors.py): how a
false caption differs from a scene, on a scene built by hand, and the per-kind tally."""

from __future__ import annotations

import numpy as np
import pytest

from minivl.data.captions import Caption
from minivl.data.language import Description
from minivl.data.shapes import Scene, ShapeObject
from minivl.recipes.vilbert_alignment_errors import error_breakdown, negative_kind

CIRCLE, SQUARE, TRIANGLE = 0, 1, 2
RED, GREEN, BLUE = 0, 1, 2
SMALL, LARGE = 0, 1
# a large red circle on the left, a small blue square on the right
SCENE = Scene(32, (ShapeObject(CIRCLE, RED, LARGE, (2, 10, 12, 20)), ShapeObject(SQUARE, BLUE, SMALL, (20, 12, 26, 18))))
RED_CIRCLE, BLUE_SQUARE = Description(CIRCLE, RED), Description(SQUARE, BLUE)


@pytest.mark.parametrize("caption, kind", [
    (Caption("list", (Description(CIRCLE, GREEN),)), "object"),  # no green circle
    (Caption("list", (RED_CIRCLE, Description(TRIANGLE))), "object"),  # no triangle
    (Caption("list", (Description(CIRCLE, RED, SMALL),)), "size"),  # the red circle is large
    (Caption("list", (RED_CIRCLE, Description(CIRCLE))), "number"),  # one circle for two phrases
    (Caption("relation", (RED_CIRCLE, BLUE_SQUARE), "right"), "relation"),  # it is left of it
    (Caption("relation", (RED_CIRCLE, BLUE_SQUARE), "smaller"), "relation"),
    (Caption("relation", (Description(CIRCLE, RED, SMALL), BLUE_SQUARE), "left"), "size"),
    (Caption("relation", (RED_CIRCLE, Description(CIRCLE)), "left"), "number"),  # one circle, two roles
    (Caption("relation", (RED_CIRCLE, Description(TRIANGLE)), "left"), "object"),
    (Caption("count", (Description(CIRCLE),), counts=(2,)), "count"),
    (Caption("count", (Description(TRIANGLE),), counts=(1,)), "object"),
])
def test_negative_kind_names_what_is_false(caption, kind):
    assert negative_kind(caption, SCENE) == kind


def test_a_true_caption_is_no_negative():
    with pytest.raises(ValueError, match="true"):
        negative_kind(Caption("relation", (RED_CIRCLE, BLUE_SQUARE), "left"), SCENE)


def test_error_breakdown_counts_each_side_and_kind():
    aligned = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    predicted = np.array([1, 0, 1, 0, 1, 1, 0, 1])
    kinds = ["list", "count", "list", "object", "object", "relation", "relation", "size"]
    out = error_breakdown(aligned, predicted, kinds)
    assert out["accuracy"] == 4 / 8 and out["n"] == 8
    assert out["positives"]["n"] == 3 and out["positives"]["errors"] == 1
    assert out["positives"]["by_kind"]["list"] == {"accuracy": 1.0, "n": 2, "errors": 0}
    assert out["positives"]["by_kind"]["count"]["errors"] == 1
    neg = out["negatives"]["by_kind"]
    assert out["negatives"]["errors"] == 3 and out["negatives"]["accuracy"] == 2 / 5
    assert neg["object"] == {"accuracy": 0.5, "n": 2, "errors": 1}
    assert neg["relation"] == {"accuracy": 0.5, "n": 2, "errors": 1} and neg["size"]["accuracy"] == 0.0
