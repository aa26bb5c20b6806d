"""A self-organising map trained as FlowSOM trains it (online, bubble neighbourhood), compiled with numba."""
from __future__ import annotations

import numba
import numpy as np

from ...base.contracts import Progress, ShouldStop

_CHUNK = 65_536
START_RATE, END_RATE = 0.05, 0.01  # FlowSOM's learning rate, decreasing linearly over training


def grid_distances(side: int) -> np.ndarray:
    """Chebyshev distances between the nodes of a side × side grid (FlowSOM's grid metric)."""
    rows, cols = np.divmod(np.arange(side * side), side)
    return np.maximum(np.abs(rows[:, None] - rows[None]), np.abs(cols[:, None] - cols[None])).astype(np.float64)


def nearest_node(x: np.ndarray, codes: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Index of the closest code (Euclidean) for every row of `x` (times `scale` per feature, when given), in row chunks."""
    codes32 = codes.astype(np.float32)
    code_norms = (codes32 * codes32).sum(axis=1)
    factor = None if scale is None else np.asarray(scale, dtype=np.float32)
    out = np.empty(x.shape[0], np.int32)
    for start in range(0, x.shape[0], _CHUNK):
        block = np.asarray(x[start:start + _CHUNK], dtype=np.float32)
        if factor is not None:
            block = block * factor
        out[start:start + _CHUNK] = (code_norms - 2.0 * block @ codes32.T).argmin(axis=1)
    return out


def train_som(x: np.ndarray, side: int, epochs: int, seed: int, progress: Progress | None = None,
              should_stop: ShouldStop | None = None) -> np.ndarray:
    """Codes (side² × d, float64) of a SOM fitted to the rows of `x` by FlowSOM's online rule.

    Codes start at `seed`-ed random cells. Each pass visits every cell once in a seeded random
    order and pulls its nearest code and the codes within the current grid radius towards it; the
    radius shrinks linearly from the 0.67 quantile of grid distances to 0 (at least half a node,
    so the nearest code always moves) and the rate from 0.05 to 0.01 over all passes.
    """
    report = progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    rng = np.random.default_rng(seed)
    data = np.ascontiguousarray(x, dtype=np.float32)
    n_nodes = side * side
    codes = data[rng.choice(data.shape[0], n_nodes, replace=data.shape[0] < n_nodes)].astype(np.float64)
    distances = grid_distances(side)
    start_radius = float(np.quantile(distances, 0.67))
    total = epochs * data.shape[0]
    for epoch in range(epochs):
        if stop():
            raise InterruptedError("clustering was cancelled")
        report(epoch / epochs, f"self-organising map: pass {epoch + 1} of {epochs} over {data.shape[0]:,} cells")
        order = rng.permutation(data.shape[0]).astype(np.int64)
        _online_pass(data, order, codes, distances, start_radius, epoch * data.shape[0], total)
    report(1.0, "self-organising map done")
    return codes


@numba.njit(cache=True, nogil=True)
def _online_pass(data, order, codes, distances, start_radius, done, total):  # pragma: no cover - compiled
    """One pass of online SOM updates over `data[order]`, in place on `codes`; `done` steps came before."""
    n_nodes, n_dims = codes.shape
    for step in range(order.size):
        cell = data[order[step]]
        nearest, best = 0, np.inf
        for node in range(n_nodes):
            d = 0.0
            for j in range(n_dims):
                diff = cell[j] - codes[node, j]
                d += diff * diff
            if d < best:
                nearest, best = node, d
        progress = (done + step) / total
        radius = max(start_radius * (1.0 - progress), 0.5)
        rate = START_RATE - (START_RATE - END_RATE) * progress
        for node in range(n_nodes):
            if distances[node, nearest] <= radius:
                for j in range(n_dims):
                    codes[node, j] += rate * (cell[j] - codes[node, j])
