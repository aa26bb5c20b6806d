"""Box and lasso selections apply to every cell, matching a reference point-in-polygon test."""
from __future__ import annotations

import numpy as np

from cytoauto_core.tools.selection import cells_in_box, cells_in_polygon, cells_in_selection


def test_box_selects_exactly_the_points_inside():
    xy = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], np.float32)
    assert cells_in_box(xy, (2.5, 0.5), (0.5, 2.5)).tolist() == [1, 2]


def test_polygon_matches_known_shapes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-2, 2, (50_000, 2)).astype(np.float32)
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    got = cells_in_polygon(xy, square)
    expected = np.flatnonzero((np.abs(xy) < 1).all(axis=1))
    assert np.array_equal(got, expected)
    # a concave "L": the notch must stay unselected
    ell = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]])
    got = set(cells_in_polygon(xy, ell).tolist())
    inside_l = ((xy[:, 0] > 0) & (xy[:, 1] > 0) & (xy[:, 0] < 2) & (xy[:, 1] < 2)
                & ~((xy[:, 0] > 1) & (xy[:, 1] > 1)))
    assert got == set(np.flatnonzero(inside_l).tolist())


def test_selection_union_of_box_and_lasso():
    xy = np.array([[0, 0], [5, 5], [10, 10]], np.float32)
    sel = {"box": [{"x": [-1, 1], "y": [-1, 1]}], "lasso": [{"x": [9, 11, 11, 9], "y": [9, 9, 11, 11]}]}
    assert cells_in_selection(xy, sel).tolist() == [0, 2]
    assert cells_in_selection(xy, {}).size == 0
