"""Valley gates: settle the cells between two populations at the density valley of one marker, as a gater would.

A manual gate is drawn where the density of cells dips between two populations. For each pair of populations a
model hesitates between, the marker that best separates their confident cells is taken; when the density of the
pair's cells along that marker has a clear valley between the two populations, the hesitant cells are assigned by
the side of the valley they lie on. Used by VIME's cascade teacher; cells and thresholds are in scaled units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ValleyGate:
    """A threshold on one marker between two populations (class indices): `high` above it, `low` below."""

    low: int
    high: int
    marker: int
    threshold: float
    dip: float  # density at the valley over the lower of the two populations' densities at their medians


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's most and second most likely class and the second one's probability."""
    order = np.argsort(-probs, axis=1)[:, :2]
    return order[:, 0], order[:, 1], np.take_along_axis(probs, order[:, 1:2], axis=1)[:, 0]


def hesitant(top1: np.ndarray, top2: np.ndarray, p2: np.ndarray, a: int, b: int, ambiguity: float) -> np.ndarray:
    """Cells whose two most likely classes are a and b, the second above `ambiguity`."""
    return (((top1 == a) & (top2 == b)) | ((top1 == b) & (top2 == a))) & (p2 > ambiguity)


def smoothed_density(t: np.ndarray, lo: float, hi: float, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernel density of `t` (Silverman's bandwidth, binned) at grid points from lo to hi."""
    bw = max(1.06 * float(t.std()) * len(t) ** -0.2, 1e-6)
    pad = 4.0 * bw
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    counts, _ = np.histogram(t, edges)
    step = edges[1] - edges[0]
    half = int(np.ceil(pad / step))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / bw) ** 2)
    density = np.convolve(counts, kernel, mode="same")  # kernel is shorter than the grid: lo < hi
    centres = 0.5 * (edges[1:] + edges[:-1])
    inside = (centres >= lo) & (centres <= hi)
    return centres[inside], density[inside]


def find_valley_gates(
    s: np.ndarray,
    probs: np.ndarray,
    s_core: np.ndarray,
    y_core: np.ndarray,
    ambiguity: float = 0.02,
    min_cells: int = 20,
    max_dip: float = 0.5,
) -> list[ValleyGate]:
    """Gates for every pair of classes with at least `min_cells` hesitant cells in `s` (probabilities `probs`) whose
    best-separating marker (largest d' between the pair's confident cells `s_core`, `y_core`) has a valley between
    the two populations' medians at most `max_dip` times as dense as the lower of the densities at those medians."""
    top1, top2, p2 = top_two(probs)
    gates = []
    for a in range(probs.shape[1]):
        for b in range(a + 1, probs.shape[1]):
            za, zb = s_core[y_core == a], s_core[y_core == b]
            if len(za) < 2 or len(zb) < 2 or hesitant(top1, top2, p2, a, b, ambiguity).sum() < min_cells:
                continue
            dprime = np.abs(za.mean(0) - zb.mean(0)) / np.sqrt(0.5 * (za.var(0) + zb.var(0)) + 1e-6)
            j = int(np.argmax(dprime))
            ma, mb = float(np.median(za[:, j])), float(np.median(zb[:, j]))
            if ma == mb:
                continue
            grid, density = smoothed_density(s[np.isin(top1, (a, b)), j], min(ma, mb), max(ma, mb))
            i = int(np.argmin(density))
            dip = float(density[i] / max(min(density[0], density[-1]), 1e-12))
            if dip < max_dip:
                low, high = (a, b) if ma < mb else (b, a)
                gates.append(ValleyGate(low, high, j, float(grid[i]), dip))
    return gates


def apply_valley_gates(
    s: np.ndarray, probs: np.ndarray, gates: list[ValleyGate], ambiguity: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Most likely class per cell, with each gate's hesitant cells assigned by their side of its threshold; also
    the mask of cells a gate decided."""
    top1, top2, p2 = top_two(probs)
    labels, decided = top1.copy(), np.zeros(len(top1), bool)
    for g in gates:
        cells = hesitant(top1, top2, p2, g.low, g.high, ambiguity)
        labels[cells] = np.where(s[cells, g.marker] > g.threshold, g.high, g.low)
        decided |= cells
    return labels, decided
