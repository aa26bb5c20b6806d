"""Per-channel summary statistics on all cells, correlations and plot-ready histograms for large event arrays."""
from __future__ import annotations

import numpy as np
import pandas as pd

HEAVY_SKEW = 2.0
HEAVY_KURTOSIS = 7.0
_CHUNK_COLUMNS = 4


def channel_stats(x: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Mean, median, sd, skewness, excess kurtosis, % negative and 1%/99% quantiles of every column, on all cells.

    Moments are accumulated in float64 around the exact column mean (two passes over a
    float64 copy of a few columns at a time, so memory stays at n × 4 × 8 bytes); skewness and
    kurtosis are the biased estimators of scipy.stats.skew/kurtosis (Fisher, excess); sd uses
    ddof=1; median and quantiles are exact (numpy 'linear' interpolation) via np.partition.
    Values are assumed finite (a NaN makes that column's moments NaN).
    """
    n, p = x.shape
    if p != len(names):
        raise ValueError("one name per column is required")
    if n == 0:
        raise ValueError("no cells")
    positions = {q: (n - 1) * q for q in (0.01, 0.5, 0.99)}
    kth = sorted({k for h in positions.values() for k in (int(np.floor(h)), min(int(np.floor(h)) + 1, n - 1))})
    rows = []
    for start in range(0, p, _CHUNK_COLUMNS):
        block = np.array(x[:, start:start + _CHUNK_COLUMNS].T, dtype=np.float64, order="C")
        for col in block:
            rows.append(_column_stats(col, positions, kth))
    out = pd.DataFrame(rows, index=pd.Index(names, name="channel"))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["heavy_skew"] = out["skewness"].abs() > HEAVY_SKEW
        out["heavy_kurtosis"] = out["kurtosis"] > HEAVY_KURTOSIS
    return out


def _column_stats(col: np.ndarray, positions: dict[float, float], kth: list[int]) -> dict[str, float]:
    """Statistics of one float64 column; partitions `col` in place after the moments are taken."""
    n = col.size
    mean = col.mean()
    d = col - mean
    d2 = d * d
    m2 = d2.sum() / n
    m3 = np.dot(d2, d) / n
    m4 = np.dot(d2, d2) / n
    negative = 100.0 * np.count_nonzero(col < 0) / n
    col.partition(kth)
    quantile = {}
    for q, h in positions.items():
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        quantile[q] = col[lo] + (h - lo) * (col[hi] - col[lo])
    flat = m2 <= 1e-24 * max(mean * mean, 1.0)
    return {
        "mean": mean,
        "median": quantile[0.5],
        "sd": np.sqrt(m2 * n / (n - 1)) if n > 1 else np.nan,
        "skewness": np.nan if flat else m3 / m2**1.5,
        "kurtosis": np.nan if flat else m4 / (m2 * m2) - 3.0,
        "pct_negative": negative,
        "q01": quantile[0.01],
        "q99": quantile[0.99],
    }


def correlation(x: np.ndarray, names: list[str], max_cells: int = 200_000, seed: int = 0) -> pd.DataFrame:
    """Pearson correlation between columns, on a seeded random subsample of at most `max_cells` cells (all if fewer)."""
    rows = x
    if x.shape[0] > max_cells:
        pick = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_cells, replace=False))
        rows = x[pick]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.corrcoef(rows.astype(np.float64, copy=False), rowvar=False)
    return pd.DataFrame(np.atleast_2d(r), index=names, columns=names)


def per_sample_stats(x: np.ndarray, sample_ids: np.ndarray, samples: list[str], names: list[str]) -> pd.DataFrame:
    """Median of every column per sample (rows: samples, NaN for a sample without cells), for per-sample comparisons."""
    order = np.argsort(sample_ids, kind="stable")
    bounds = np.searchsorted(sample_ids[order], np.arange(len(samples) + 1))
    medians = np.full((len(samples), x.shape[1]), np.nan)
    for s in range(len(samples)):
        rows = order[bounds[s]:bounds[s + 1]]
        if rows.size:
            medians[s] = np.median(x[rows], axis=0)
    return pd.DataFrame(medians, index=pd.Index(samples, name="sample"), columns=names)


def histogram(
    x_col: np.ndarray, bins: int = 100, range: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of one column (finite values; default range min–max) so plots never ship all events."""
    finite = np.isfinite(x_col)
    values = x_col if finite.all() else x_col[finite]
    if range is None:
        range = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if range[0] == range[1]:
            range = (range[0] - 0.5, range[1] + 0.5)
    counts, edges = np.histogram(values, bins=bins, range=range)
    return counts, edges
