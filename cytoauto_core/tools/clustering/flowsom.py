"""FlowSOM-style clustering of every cell: a self-organising map on a seeded subsample, metaclustered to k clusters."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...base.contracts import Progress, ShouldStop
from ..embeddings import subsample
from .metacluster import consensus_metaclusters
from .som import nearest_node, train_som


@dataclass
class ClusteringParams:
    """How cells are clustered; JSON-serialisable. `n_clusters` is the one a user reasons about.

    `grid` × `grid` SOM nodes (FlowSOM's 10 × 10 by default) trained for `epochs` passes on a
    `seed`-ed subsample of at most `max_fit_cells`; every cell then joins its nearest node's cluster.
    """

    n_clusters: int = 20
    grid: int = 10
    epochs: int = 10
    max_fit_cells: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_clusters < 1 or self.n_clusters > self.grid * self.grid:
            raise ValueError(f"the number of clusters must be between 1 and {self.grid * self.grid} (the SOM nodes)")


@dataclass
class Clustering:
    """A clustering of every cell: `clusters[i]` is cell i's cluster (0 = the largest); the SOM stays in FlowSOM."""

    clusters: np.ndarray  # int16, one per cell
    params: ClusteringParams
    seconds: float

    @property
    def description(self) -> str:
        p = self.params
        return (f"FlowSOM-style: {p.grid}×{p.grid} SOM ({p.epochs} passes, seed {p.seed}) metaclustered into "
                f"{int(self.clusters.max()) + 1} clusters, in {self.seconds:.1f} s.")


OFF_SCALE = 10.0  # a marker spread this many times wider than the median marker's is on another scale


def balance_scales(x: np.ndarray) -> np.ndarray:
    """Per-feature factors that bring markers on another scale to the median marker's spread; 1 for the rest.

    Transformed markers (arcsinh) are clustered as they are, as FlowSOM does; a channel left on its
    instrument scale (linear scatter next to arcsinh markers: ~10,000× the spread) would otherwise
    decide every distance alone. Measured on the dev suite: such channels occur only on flow panels.
    """
    spread = np.asarray(x, dtype=np.float64).std(axis=0)
    typical = float(np.median(spread))
    off = spread > OFF_SCALE * typical
    return np.where(off, typical / np.where(off, spread, 1.0), 1.0)


class FlowSOM:
    """Cluster cells like FlowSOM (SOM, consensus metaclustering of nodes weighted by their cells): fit, predict."""

    def __init__(self, params: ClusteringParams | None = None) -> None:
        self.params = params or ClusteringParams()
        self.codes: np.ndarray | None = None  # SOM nodes in the balanced feature space (features × scale)
        self.scale: np.ndarray | None = None
        self.node_clusters: np.ndarray | None = None

    def fit(self, x: np.ndarray, progress: Progress | None = None, should_stop: ShouldStop | None = None) -> "FlowSOM":
        """Train the SOM on a subsample of `x` (cells × features, scales balanced) and metacluster its nodes."""
        report = progress or (lambda fraction, message: None)
        p = self.params
        fit_x = np.asarray(x[subsample(x.shape[0], p.max_fit_cells, p.seed)], dtype=np.float32)
        self.scale = balance_scales(fit_x)
        fit_x *= self.scale.astype(np.float32)
        scaled = lambda f, m: report(0.8 * f, m)  # noqa: E731
        self.codes = train_som(fit_x, p.grid, p.epochs, p.seed, scaled, should_stop)
        report(0.8, f"metaclustering {p.grid * p.grid} nodes into {p.n_clusters} clusters")
        node_cells = np.bincount(nearest_node(fit_x, self.codes), minlength=self.codes.shape[0])
        groups = consensus_metaclusters(self.codes, node_cells, p.n_clusters, p.seed)
        self.node_clusters = _by_size(groups, node_cells)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Cluster of every row of `x`: the cluster of its nearest SOM node (int16)."""
        if self.codes is None or self.node_clusters is None:
            raise RuntimeError("fit the clustering first")
        return self.node_clusters[nearest_node(x, self.codes, self.scale)].astype(np.int16)

    def fit_predict(self, x: np.ndarray, progress: Progress | None = None,
                    should_stop: ShouldStop | None = None) -> Clustering:
        """Fit on `x` and cluster every cell of it."""
        start = time.perf_counter()
        self.fit(x, progress, should_stop)
        (progress or (lambda f, m: None))(0.9, f"assigning {x.shape[0]:,} cells")
        clusters = self.predict(x)
        return Clustering(clusters, self.params, time.perf_counter() - start)


def _by_size(groups: np.ndarray, node_cells: np.ndarray) -> np.ndarray:
    """Renumber node groups so cluster 0 holds the most fitted cells (ties by group number)."""
    sizes = np.bincount(groups, weights=node_cells, minlength=groups.max() + 1)
    order = np.lexsort((np.arange(sizes.size), -sizes))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[groups].astype(np.int32)
