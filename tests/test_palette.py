"""Figures stay legible: category colours are distinct and never grey, labelled cells lie on top of unlabelled ones,
and heatmaps name every row and column."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from cytoauto_core.store.labels import PALETTE
from ui.plots import (LABELLED_SIZE, UNASSIGNED_COLOR, UNKNOWN_CODE, UNKNOWN_COLOR,
                      cluster_heatmap_figure, heatmap_figure, scatter_figure)

DISTINCT = 20.0  # CIE76 ΔE between any two category colours
FROM_GREY = 30.0  # ΔE from the unassigned and unknown greys
MIN_CHROMA = 30.0  # CIELAB chroma: a colour, not a grey


def _lab(hex_color: str) -> np.ndarray:
    """CIELAB (D65) of an sRGB '#rrggbb' colour."""
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_enough_category_colours_for_the_default_twenty_clusters_all_distinct():
    assert len(PALETTE) >= 24 and len(set(PALETTE)) == len(PALETTE)
    closest = min((float(np.linalg.norm(_lab(a) - _lab(b))), a, b)
                  for a, b in itertools.combinations(PALETTE, 2))
    assert closest[0] >= DISTINCT, closest


@pytest.mark.parametrize("colour", PALETTE)
def test_no_category_colour_is_grey_or_near_the_unassigned_and_unknown_greys(colour):
    lab = _lab(colour)
    assert np.hypot(lab[1], lab[2]) >= MIN_CHROMA, f"{colour} is greyish"
    for grey in (UNASSIGNED_COLOR, UNKNOWN_COLOR):
        assert np.linalg.norm(lab - _lab(grey)) >= FROM_GREY, f"{colour} is close to {grey}"


def test_twenty_clusters_get_twenty_colours():
    codes = np.arange(20_000) % 20
    fig = scatter_figure(np.zeros((20_000, 2)), np.arange(20_000), codes, categories=[f"c{i}" for i in range(20)])
    assert len({t.marker.color for t in fig.data[1:]}) == 20


def test_labelled_cells_are_drawn_last_larger_and_opaque_over_faint_unassigned_ones():
    codes = np.array([0, -1, 1, -1, UNKNOWN_CODE, 0])
    xy = np.arange(12, dtype=float).reshape(6, 2)
    fig = scatter_figure(xy, np.arange(6), codes, categories=["A", "B"], colors=["#1f77b4", "#ff7f0e"],
                         labelled_on_top=True)
    cells = fig.data[0]
    assert list(cells.customdata) == [1, 3, 4, 0, 2, 5], "named cells come last, so they are drawn over the others"
    assert list(cells.x) == [2, 6, 8, 0, 4, 10], "coordinates follow the same order"
    assert list(cells.marker.size[-3:]) == [LABELLED_SIZE] * 3 and max(cells.marker.size[:3]) < LABELLED_SIZE
    assert cells.marker.opacity == 1 and list(cells.marker.color[-3:]) == ["#1f77b4", "#ff7f0e", "#1f77b4"]
    assert cells.marker.color[0].startswith("rgba(187,187,187,"), "unassigned cells are a see-through grey"
    assert {t.name: t.marker.color for t in fig.data[1:]}["unassigned"] == UNASSIGNED_COLOR, "the legend keeps its grey"


def test_heatmaps_name_every_marker_and_row():
    markers = [f"marker_{i:02d}" for i in range(40)]
    rows = [f"population {i}" for i in range(30)]
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 40)), index=rows, columns=markers)
    fig = heatmap_figure(frame, "medians")
    assert list(fig.layout.xaxis.ticktext) == markers and list(fig.layout.xaxis.tickvals) == markers
    assert list(fig.layout.yaxis.ticktext) == rows
    clusters = cluster_heatmap_figure(frame.set_axis(range(30)), rows, [])
    assert list(clusters.layout.xaxis.ticktext) == markers and list(clusters.layout.yaxis.ticktext) == rows
