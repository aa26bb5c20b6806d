"""Explore's boxplots: one box per marker, side by side, with the exact quartiles of every cell."""
from __future__ import annotations

import numpy as np

from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.study.demo import make_demo
from ui.plots import box_figure


def test_boxes_sit_side_by_side_at_their_own_marker():
    dataset = make_demo(2_000)
    x = transform_features(dataset, default_spec(dataset))[:, :5]
    markers = [c.marker for c in dataset.channels[:5]]
    fig = box_figure(x, markers)
    assert [tuple(t.x) for t in fig.data] == [(m,) for m in markers], "each box at its own x, none stacked at x = 0"
    np.testing.assert_allclose([t.median[0] for t in fig.data], np.median(x, axis=0), rtol=1e-5)
