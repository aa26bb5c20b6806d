"""Consensus metaclustering: merge SOM nodes into k clusters that stay together under resampling (as FlowSOM does)."""
from __future__ import annotations

import numba
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import cdist, squareform

RESAMPLES = 100
RESAMPLE_SHARE = 0.9


def consensus_metaclusters(codes: np.ndarray, node_cells: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Metacluster 0..k-1 of every code row (int32), numbered by first node.

    As ConsensusClusterPlus in FlowSOM: `RESAMPLES` average-linkage hierarchical clusterings of
    random 90 % subsets of the codes; the share of subsets in which two nodes fell in the same
    cluster is their consensus, and the final clustering is average linkage on 1 − consensus.
    Unlike FlowSOM, each resample's average linkage is over cells, not nodes: a node counts as its
    `node_cells` fitted cells (plus one, so an empty node still counts), so two groups of nodes
    are as far apart as their cells are on average, and a near-empty node weighs next to nothing.
    """
    n = codes.shape[0]
    k = int(min(max(k, 1), n))
    if k == n:
        return np.arange(n, dtype=np.int32)
    weights = np.asarray(node_cells, dtype=np.float64) + 1.0
    node_distances = cdist(codes, codes)
    rng = np.random.default_rng(seed)
    together = np.zeros((n, n))
    drawn = np.zeros((n, n))
    size = max(int(n * RESAMPLE_SHARE), k)
    for _ in range(RESAMPLES):
        rows = np.sort(rng.choice(n, size, replace=False))
        groups = weighted_average_linkage(node_distances[np.ix_(rows, rows)], weights[rows], k)
        same = groups[:, None] == groups[None, :]
        together[np.ix_(rows, rows)] += same
        drawn[np.ix_(rows, rows)] += 1
    consensus = np.divide(together, drawn, out=np.zeros_like(together), where=drawn > 0)
    distance = 1.0 - consensus
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    return _renumber(fcluster(tree, k, criterion="maxclust") - 1)


@numba.njit(cache=True, nogil=True)
def weighted_average_linkage(distances, weights, k):  # pragma: no cover - compiled
    """Groups (0..n-1 labels, k distinct) of weighted average linkage on a square distance matrix.

    The two closest groups merge until k remain; a merged group's distance to any other is the
    weighted mean of its two parts' distances (Lance–Williams), i.e. the weighted mean distance
    between their members. Equal weights give plain average linkage (UPGMA).
    """
    n = distances.shape[0]
    d = distances.copy()
    w = weights.copy()
    alive = np.ones(n, np.bool_)
    parent = np.arange(n)
    for _ in range(n - k):
        best, bi, bj = np.inf, 0, 0
        for i in range(n):
            if alive[i]:
                for j in range(i + 1, n):
                    if alive[j] and d[i, j] < best:
                        best, bi, bj = d[i, j], i, j
        total = w[bi] + w[bj]
        for m in range(n):
            if alive[m] and m != bi and m != bj:
                merged = (w[bi] * d[bi, m] + w[bj] * d[bj, m]) / total
                d[bi, m] = merged
                d[m, bi] = merged
        w[bi] = total
        alive[bj] = False
        parent[bj] = bi
    labels = np.empty(n, np.int64)
    for i in range(n):
        root = i
        while parent[root] != root:
            root = parent[root]
        labels[i] = root
    return labels


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Groups renumbered 0..m-1 by first appearance, so the numbering is stable for equal partitions."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int32)
