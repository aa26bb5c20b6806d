"""Valley gates: a gate where the density of two populations dips, none inside a continuum, hesitant cells by side."""
from __future__ import annotations

import numpy as np

from cytoauto_core.models.valleys import apply_valley_gates, find_valley_gates, smoothed_density


def two_populations(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A large dim and a small bright population on marker 0 (a valley between them); markers 1–2 are noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (4000, 3))
    y = np.r_[np.zeros(3000, int), np.ones(1000, int)]
    x[:, 0] = np.r_[rng.normal(0.0, 0.6, 3000), rng.normal(3.0, 0.6, 1000)]
    return x.astype(np.float32), y


def biased_probs(marker: np.ndarray, boundary: float) -> np.ndarray:
    """A model that puts the boundary between the two populations at `boundary`, off the valley."""
    p1 = 1.0 / (1.0 + np.exp(-4.0 * (marker - boundary)))
    return np.c_[1.0 - p1, p1].astype(np.float32)


def mixture_valley() -> float:
    """Where the true two-Gaussian mixture density of `two_populations` is lowest between the means."""
    g = np.linspace(0.0, 3.0, 3001)
    density = 3000 * np.exp(-0.5 * (g / 0.6) ** 2) + 1000 * np.exp(-0.5 * ((g - 3.0) / 0.6) ** 2)
    return float(g[np.argmin(density)])


def cores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Confident cells: within half a standard deviation of their population's centre on marker 0."""
    return np.abs(x[:, 0] - np.where(y == 1, 3.0, 0.0)) < 0.3


def test_smoothed_density_peaks_at_the_mode():
    t = np.random.default_rng(1).normal(2.0, 0.5, 20_000)
    grid, density = smoothed_density(t, 0.0, 4.0)
    assert grid[0] >= 0.0 and grid[-1] <= 4.0
    assert abs(grid[np.argmax(density)] - 2.0) < 0.1


def test_gate_sits_in_the_valley_and_settles_hesitant_cells_by_side():
    x, y = two_populations()
    probs = biased_probs(x[:, 0], boundary=2.3)
    core = cores(x, y)
    gates = find_valley_gates(x, probs, x[core], y[core])
    assert len(gates) == 1
    g = gates[0]
    assert (g.low, g.high, g.marker) == (0, 1, 0) and g.dip < 0.5
    assert abs(g.threshold - mixture_valley()) < 0.2
    labels, decided = apply_valley_gates(x, probs, gates)
    assert decided.sum() > 100
    np.testing.assert_array_equal(labels[decided], (x[decided, 0] > g.threshold).astype(int))
    np.testing.assert_array_equal(labels[~decided], probs[~decided].argmax(axis=1))
    assert np.mean(labels == y) > np.mean(probs.argmax(axis=1) == y) + 0.01


def test_no_gate_inside_a_continuum():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, (4000, 3)).astype(np.float32)
    y = (x[:, 0] > 0.0).astype(int)  # one population cut in two: no density dip between the halves
    probs = biased_probs(x[:, 0], boundary=0.4)
    core = np.abs(x[:, 0]) > 1.0
    assert find_valley_gates(x, probs, x[core], y[core]) == []


def test_no_gate_for_pairs_with_few_hesitant_cells():
    x, y = two_populations()
    probs = biased_probs(x[:, 0], boundary=2.3)
    core = cores(x, y)
    n_hesitant = int(np.sum(probs.min(axis=1) > 0.02))
    assert find_valley_gates(x, probs, x[core], y[core], min_cells=n_hesitant + 1) == []
    labels, decided = apply_valley_gates(x, probs, [])
    assert not decided.any() and np.array_equal(labels, probs.argmax(axis=1))
