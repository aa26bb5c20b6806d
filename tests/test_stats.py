"""channel_stats and helpers against scipy/numpy on known data, heavy-tailed columns included."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as ss

from cytoauto_core.prep.stats import channel_stats, correlation, histogram, per_sample_stats


@pytest.fixture(scope="module")
def columns() -> np.ndarray:
    """Normal, lognormal (heavy skew), Student-t df=3 (heavy kurtosis), mostly-negative uniform; odd n."""
    rng = np.random.default_rng(1)
    n = 20_001
    return np.column_stack([
        rng.normal(2.0, 0.5, n),
        rng.lognormal(0.0, 1.0, n),
        rng.standard_t(3, n),
        rng.uniform(-3.0, 1.0, n),
    ]).astype(np.float32)


def test_channel_stats_match_scipy(columns):
    names = ["normal", "lognormal", "t3", "uniform"]
    df = channel_stats(columns, names)
    ref = columns.astype(np.float64)
    np.testing.assert_allclose(df["mean"], ref.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(df["sd"], ref.std(axis=0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(df["skewness"], ss.skew(ref, axis=0), rtol=1e-8)
    np.testing.assert_allclose(df["kurtosis"], ss.kurtosis(ref, axis=0), rtol=1e-8)
    np.testing.assert_array_equal(df["median"], np.median(ref, axis=0))
    q = np.quantile(ref, [0.01, 0.99], axis=0)
    np.testing.assert_allclose(df["q01"], q[0], rtol=1e-12)
    np.testing.assert_allclose(df["q99"], q[1], rtol=1e-12)
    np.testing.assert_allclose(df["pct_negative"], 100 * (ref < 0).mean(axis=0))
    assert df["heavy_skew"].tolist() == [False, True, False, False]
    assert df["heavy_kurtosis"].tolist() == [False, True, True, False]


def test_even_count_median_and_constant_column():
    x = np.array([[1, 5], [2, 5], [10, 5], [4, 5]], dtype=np.float32)
    df = channel_stats(x, ["a", "const"])
    assert df.loc["a", "median"] == 3.0
    assert df.loc["a", "q99"] == pytest.approx(np.quantile([1, 2, 4, 10], 0.99))
    assert np.isnan(df.loc["const", "skewness"]) and not df.loc["const", "heavy_skew"]


def test_correlation_and_per_sample_medians(columns):
    r = correlation(columns, list("abcd"))
    np.testing.assert_allclose(r.to_numpy(), np.corrcoef(columns.astype(np.float64), rowvar=False), atol=1e-6)
    sub = correlation(columns, list("abcd"), max_cells=5_000, seed=3)
    assert np.allclose(np.diag(sub), 1.0) and sub.equals(correlation(columns, list("abcd"), max_cells=5_000, seed=3))
    ids = np.arange(columns.shape[0]) % 2
    med = per_sample_stats(columns, ids, ["s0", "s1", "empty"], list("abcd"))
    np.testing.assert_allclose(med.loc["s1"], np.median(columns[1::2], axis=0))
    assert med.loc["empty"].isna().all()


def test_histogram_counts_finite_values():
    col = np.array([0, 1, 2, 3, np.nan, np.inf], dtype=np.float32)
    counts, edges = histogram(col, bins=3)
    assert counts.tolist() == [1, 1, 2] and edges[0] == 0 and edges[-1] == 3
