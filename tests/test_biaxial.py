"""Biaxial plot helpers: default axes and the per-point density used for pseudocolour."""
from __future__ import annotations

import numpy as np

from conftest import LEVINE
from cytoauto_core.io import read_files
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.tools.biaxial import default_axes, point_density


def test_density_counts_the_points_sharing_a_histogram_cell():
    rng = np.random.default_rng(0)
    dense = rng.normal(0, 0.05, (900, 2))
    sparse = rng.uniform(-10, 10, (100, 2))
    density = point_density(np.vstack([dense, sparse]).astype(np.float32), bins=64)
    assert density.dtype == np.float32 and density.shape == (1_000,)
    assert density[:900].min() > np.quantile(density[900:], 0.9), "a tight cluster is denser than scattered cells"
    grid = np.array([[0, 0], [0, 0], [0, 0], [1, 1]], np.float32)
    assert np.allclose(point_density(grid, bins=2), np.log1p([3, 3, 3, 1]))
    with_nan = point_density(np.array([[0, 0], [np.nan, 1], [1, 1]], np.float32), bins=2)
    assert with_nan[1] == 0 and np.isfinite(with_nan).all()
    assert point_density(np.empty((0, 2), np.float32)).shape == (0,)


def test_default_axes_are_the_two_widest_spread_markers_of_a_real_file():
    dataset = read_files([LEVINE / "Levine_32dim_10k.fcs"])  # 10,000 cells: all of them are looked at
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    first, second = default_axes(x)
    variance = x.var(axis=0)
    assert {first, second} == set(np.argsort(variance)[-2:].tolist())
    assert variance[first] >= variance[second]
    assert default_axes(x[:, :1]) == (0, 0)
