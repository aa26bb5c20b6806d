"""What a cluster looks like: median expression per cluster, similarity orderings for a heatmap, its most central cells."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage

PROFILE_CELLS = 20_000  # per cluster: a seeded subsample keeps medians instant on a million cells


def cluster_medians(x: np.ndarray, clusters: np.ndarray, markers: list[str], seed: int = 0) -> pd.DataFrame:
    """Median of every marker per cluster (rows = cluster ids present, sorted), from ≤ PROFILE_CELLS cells each."""
    rng = np.random.default_rng(seed)
    rows = {}
    for c in np.unique(clusters[clusters >= 0]):
        members = np.flatnonzero(clusters == c)
        if members.size > PROFILE_CELLS:
            members = np.sort(rng.choice(members, PROFILE_CELLS, replace=False))
        rows[int(c)] = np.median(x[members], axis=0)
    return pd.DataFrame.from_dict(rows, orient="index", columns=markers)


def similarity_order(table: pd.DataFrame) -> tuple[list, list]:
    """Row and column labels of `table` ordered by average-linkage hierarchical clustering (heatmap order)."""
    values = table.to_numpy(np.float64)
    rows = leaves_list(linkage(values, "average")) if len(table) > 2 else np.arange(len(table))
    cols = leaves_list(linkage(values.T, "average")) if table.shape[1] > 2 else np.arange(table.shape[1])
    return table.index[rows].tolist(), table.columns[cols].tolist()


def central_cells(x: np.ndarray, clusters: np.ndarray, cluster: int, n: int) -> np.ndarray:
    """Row indices of the `n` cells of `cluster` closest (Euclidean) to its median: the cluster's most typical cells."""
    members = np.flatnonzero(clusters == cluster)
    if members.size <= n:
        return members
    centre = np.median(x[members], axis=0)
    distance = ((np.asarray(x[members], dtype=np.float32) - centre) ** 2).sum(axis=1)
    return np.sort(members[np.argpartition(distance, n)[:n]])
