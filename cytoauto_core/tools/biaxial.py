"""Marker-vs-marker (biaxial) plot helpers: default axes a cytometrist would start from, and pseudocolour density."""
from __future__ import annotations

import numpy as np

AXIS_SAMPLE = 20_000  # cells a default-axes choice looks at: a seeded subsample keeps it instant on 1M cells


def default_axes(x: np.ndarray, seed: int = 0) -> tuple[int, int]:
    """Columns of the two markers with the widest spread (highest variance of the transformed values).

    A marker that separates positive from negative cells has a wide spread, so the first plot shows populations.
    """
    if x.shape[1] < 2:
        return 0, 0
    rows = np.arange(x.shape[0]) if x.shape[0] <= AXIS_SAMPLE else \
        np.sort(np.random.default_rng(seed).choice(x.shape[0], AXIS_SAMPLE, replace=False))
    variance = np.nanvar(np.asarray(x[rows], np.float64), axis=0)
    first, second = np.argsort(-np.nan_to_num(variance, nan=-1.0), kind="stable")[:2]
    return int(first), int(second)


def point_density(points: np.ndarray, bins: int = 128) -> np.ndarray:
    """Each point's local density: log(1 + count) of its cell in a bins × bins histogram over the 0.5–99.5 % range.

    A histogram lookup is linear in the points (no kernel), so 100,000 drawn points take milliseconds.
    """
    pts = np.asarray(points, np.float64)
    if pts.shape[0] == 0:
        return np.zeros(0, np.float32)
    finite = np.isfinite(pts).all(axis=1)
    lo, hi = np.nanquantile(pts[finite], [0.005, 0.995], axis=0) if finite.any() else (np.zeros(2), np.ones(2))
    hi = np.where(hi > lo, hi, lo + 1.0)
    scaled = np.nan_to_num((pts - lo) / (hi - lo) * bins, nan=0.0, posinf=bins, neginf=0.0)
    cell = np.clip(scaled.astype(np.int64), 0, bins - 1)
    flat = cell[:, 0] * bins + cell[:, 1]
    counts = np.bincount(flat[finite], minlength=bins * bins)
    density = np.log1p(counts[flat]).astype(np.float32)
    density[~finite] = 0.0
    return density
