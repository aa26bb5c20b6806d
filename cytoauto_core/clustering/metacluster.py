"""Consensus metaclustering: merge SOM nodes into k clusters that stay together under resampling (as FlowSOM does)."""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

RESAMPLES = 100
RESAMPLE_SHARE = 0.9


def consensus_metaclusters(codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Metacluster 0..k-1 of every code row (int32), numbered by first node.

    As ConsensusClusterPlus in FlowSOM: `RESAMPLES` average-linkage hierarchical clusterings of
    random 90 % subsets of the codes; the share of subsets in which two nodes fell in the same
    cluster is their consensus, and the final clustering is average linkage on 1 − consensus.
    """
    n = codes.shape[0]
    k = int(min(max(k, 1), n))
    if k == n:
        return np.arange(n, dtype=np.int32)
    rng = np.random.default_rng(seed)
    together = np.zeros((n, n))
    drawn = np.zeros((n, n))
    size = max(int(n * RESAMPLE_SHARE), k)
    for _ in range(RESAMPLES):
        rows = np.sort(rng.choice(n, size, replace=False))
        groups = _average_linkage(codes[rows], k)
        same = groups[:, None] == groups[None, :]
        together[np.ix_(rows, rows)] += same
        drawn[np.ix_(rows, rows)] += 1
    consensus = np.divide(together, drawn, out=np.zeros_like(together), where=drawn > 0)
    distance = 1.0 - consensus
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    return _renumber(fcluster(tree, k, criterion="maxclust") - 1)


def _average_linkage(points: np.ndarray, k: int) -> np.ndarray:
    """Average-linkage hierarchical clustering of `points` into at most k groups."""
    return fcluster(linkage(points, method="average"), k, criterion="maxclust")


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Groups renumbered 0..m-1 by first appearance, so the numbering is stable for equal partitions."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int32)
