"""2-D maps of all cells: PCA on everything; t-SNE/UMAP fitted on a seeded subsample with the rest placed onto it."""
from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..base.contracts import Progress, ShouldStop

METHODS = ("pca", "tsne", "umap")
PLACEMENTS = ("knn", "transform")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
_QUERY_CHUNK = 50_000
_TSNE_EXAGGERATION_ITERS = 250
_TSNE_ITERS = 500
_TSNE_CALLBACK_EVERY = 25
# Below this many fitted cells openTSNE uses Barnes-Hut, where two threads measured 10x slower
# than one on a busy 2-core machine (thread synchronisation dominates tiny iterations).
_TSNE_PARALLEL_FROM = 10_000


class EmbeddingCancelled(Exception):
    """Raised by `embed` when `should_stop()` turned True; no partial map is returned."""


@dataclass
class EmbeddingParams:
    """How a map is made; JSON-serialisable and, whole, the cache key (threads may change t-SNE/UMAP in the last bits).

    PCA always uses all cells. t-SNE (`perplexity`) and UMAP (`n_neighbors`, `min_dist`) are
    fitted on a `seed`-ed random subsample of `max_fit_cells`; the other cells are placed by
    'knn' (mean map position of their `placement_k` nearest fitted cells in marker space) or
    by the library's own 'transform' (slower: measured ~0.5 ms per cell for openTSNE).
    """

    method: str = "umap"
    max_fit_cells: int = 50_000
    perplexity: float = 30.0
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0
    n_jobs: int = 2
    placement: str = "knn"
    placement_k: int = 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown embedding method {self.method!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddingParams":
        return cls(**d)


@dataclass
class Embedding:
    """A map of every cell: `coords[i]` is cell i; `fit_indices` are the cells the method was fitted on.

    `explained_variance` (PCA only) holds the variance ratios of PC1 and PC2; `description` is
    the sentence the UI shows under the map, stating subsample, seed and placement.
    """

    coords: np.ndarray
    fit_indices: np.ndarray
    params: EmbeddingParams
    seconds: float
    description: str
    explained_variance: np.ndarray | None = None


def embedding_key(data_hash: str, features: list[str], transform: dict, params: EmbeddingParams) -> str:
    """A stable hex key for the workspace cache: same data, features, transform and parameters give the same key."""
    blob = json.dumps(
        {"data": data_hash, "features": list(features), "transform": transform, "params": params.to_dict()},
        sort_keys=True, default=str,
    )
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def embed(
    x: np.ndarray,
    params: EmbeddingParams,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Embedding:
    """Map every row of `x` (cells × features, float32) to 2-D; EmbeddingCancelled once `should_stop()` is True."""
    start = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    n = x.shape[0]
    if n < 3:
        raise ValueError("a map needs at least 3 cells")
    if params.method == "pca":
        report(0.0, "PCA of all cells")
        coords, ratio = pca_2d(x)
        report(1.0, "PCA done")
        first, second = (100 * ratio).tolist()
        text = f"PCA of all {n:,} cells; PC1 and PC2 explain {first:.1f}% and {second:.1f}% of the variance."
        return Embedding(coords, np.arange(n), params, time.perf_counter() - start, text, ratio)

    fit_indices = subsample(n, params.max_fit_cells, params.seed)
    fit_x = x[fit_indices]
    _check(stop)
    name = METHOD_NAMES[params.method]
    report(0.0, f"{name}: fitting {fit_indices.size:,} cells")
    fit_share = 0.8 if fit_indices.size < n else 1.0
    scaled = lambda f, m: report(fit_share * f, m)  # noqa: E731
    if params.method == "tsne":
        model, fit_coords = _fit_tsne(fit_x, params, scaled, stop)
    else:
        model, fit_coords = _fit_umap(fit_x, params, scaled, stop)
    _check(stop)
    coords = np.empty((n, 2), dtype=np.float32)
    coords[fit_indices] = fit_coords
    text = f"{name} fitted on {fit_indices.size:,} cells (seed {params.seed})"
    rest = np.setdiff1d(np.arange(n), fit_indices, assume_unique=True)
    if rest.size:
        if params.placement == "knn":
            place = _knn_placer(fit_x, fit_coords, params)
            how = f"{params.placement_k}-NN interpolation in marker space"
        else:
            place = model.transform
            how = f"{name} transform onto the fitted map"
        for done in range(0, rest.size, _QUERY_CHUNK):
            _check(stop)
            report(fit_share + (1 - fit_share) * done / rest.size, f"placing the other {rest.size:,} cells")
            rows = rest[done:done + _QUERY_CHUNK]
            coords[rows] = place(x[rows])
        text += f"; the other {rest.size:,} placed by {how}"
    else:
        text = f"{name} of all {n:,} cells (seed {params.seed})"
    report(1.0, f"{name} done")
    return Embedding(coords, fit_indices, params, time.perf_counter() - start, text + ".")


def _check(stop: ShouldStop) -> None:
    """Raise EmbeddingCancelled when the caller asked to stop."""
    if stop():
        raise EmbeddingCancelled("the map was cancelled")


def subsample(n_cells: int, max_cells: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded uniform random subsample of at most `max_cells` cells (all when fewer)."""
    if n_cells <= max_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, max_cells, replace=False))


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal-component scores of all cells (float32) and their explained-variance ratios.

    Covariance accumulated in float64 row chunks, then an exact eigendecomposition; signs follow
    sklearn (largest |loading| positive) so results match sklearn's PCA.
    """
    n = x.shape[0]
    mean = np.zeros(x.shape[1])
    for s in range(0, n, 200_000):
        mean += x[s:s + 200_000].sum(axis=0, dtype=np.float64)
    mean /= n
    cov = np.zeros((x.shape[1], x.shape[1]))
    for s in range(0, n, 200_000):
        block = x[s:s + 200_000] - mean
        cov += block.T @ block
    cov /= max(n - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:2]
    components = vectors[:, order]
    signs = np.sign(components[np.abs(components).argmax(axis=0), [0, 1]])
    components *= np.where(signs == 0, 1.0, signs)
    ratio = values[order] / max(values.sum(), np.finfo(float).tiny)
    coords = x @ components.astype(np.float32)
    coords -= (mean @ components).astype(np.float32)
    return coords, ratio


def _fit_tsne(fit_x: np.ndarray, params: EmbeddingParams, report: Progress, stop: ShouldStop):
    """openTSNE on the subsample (FFT from 10k cells, Barnes-Hut below); progress and cancellation every 25 iterations.

    Neighbours are exact (sklearn trees): on 50k × 32 cytometry cells that measured 7 s against
    31 s for openTSNE's default Annoy index, and exact search keeps the map deterministic.
    """
    import openTSNE
    from openTSNE.callbacks import Callback

    total = _TSNE_EXAGGERATION_ITERS + _TSNE_ITERS

    class Monitor(Callback):
        """Progress and cancellation inside the optimisation loop."""

        def __init__(self, offset: int) -> None:
            self.offset = offset

        def __call__(self, iteration: int, error: float, embedding) -> bool:
            done = self.offset + iteration
            report(0.3 + 0.7 * done / total, f"t-SNE iteration {done}/{total}")
            return stop()

    report(0.0, "t-SNE: nearest neighbours")
    affinities = openTSNE.affinity.PerplexityBasedNN(
        fit_x, perplexity=params.perplexity, n_jobs=params.n_jobs, random_state=params.seed, method="exact"
    )
    _check(stop)
    init = openTSNE.initialization.pca(fit_x, random_state=params.seed)
    threads = params.n_jobs if fit_x.shape[0] >= _TSNE_PARALLEL_FROM else 1
    emb = openTSNE.TSNEEmbedding(
        init, affinities, n_jobs=threads, random_state=params.seed, negative_gradient_method="auto"
    )
    try:
        emb = emb.optimize(_TSNE_EXAGGERATION_ITERS, exaggeration=12, momentum=0.5,
                           callbacks=Monitor(0), callbacks_every_iters=_TSNE_CALLBACK_EVERY)
        emb = emb.optimize(_TSNE_ITERS, momentum=0.8,
                           callbacks=Monitor(_TSNE_EXAGGERATION_ITERS), callbacks_every_iters=_TSNE_CALLBACK_EVERY)
    except openTSNE.tsne.OptimizationInterrupt as exc:
        raise EmbeddingCancelled("the map was cancelled") from exc
    return emb, np.asarray(emb, dtype=np.float32)


def _fit_umap(fit_x: np.ndarray, params: EmbeddingParams, report: Progress, stop: ShouldStop):
    """umap-learn on the subsample; a fixed random_state makes it deterministic (and single-threaded).

    With kNN placement the neighbour graph is computed exactly with sklearn and handed to UMAP,
    which skips pynndescent's index (slow to compile, and only needed by UMAP's own transform).
    Progress and cancellation come from UMAP's own epoch counter (its tqdm bar, written to _EpochSink).
    """
    import umap
    from sklearn.neighbors import NearestNeighbors

    knn = (None, None, None)
    if params.placement == "knn" and fit_x.shape[0] > params.n_neighbors:
        report(0.0, "UMAP: nearest neighbours")
        index = NearestNeighbors(n_neighbors=params.n_neighbors, n_jobs=params.n_jobs).fit(fit_x)
        distances, neighbours = index.kneighbors(fit_x)
        knn = (neighbours, distances.astype(np.float32), None)
        _check(stop)
    report(0.1, "UMAP: neighbour graph and spectral start")
    sink = _EpochSink(lambda f: report(0.2 + 0.8 * f, f"UMAP: layout, {100 * f:.0f}% of epochs"), stop)
    reducer = umap.UMAP(
        n_neighbors=params.n_neighbors, min_dist=params.min_dist, n_components=2, random_state=params.seed,
        precomputed_knn=knn,
        tqdm_kwds={"disable": False, "file": sink, "bar_format": "{n}/{total}", "mininterval": 0.5, "ascii": True},
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(overridden to 1 by setting random_state|knn_search_index).*")
        coords = reducer.fit_transform(fit_x).astype(np.float32)
    return reducer, coords


class _EpochSink:
    """A file for UMAP's tqdm epoch bar ('n/total'): forwards the fraction done and raises EmbeddingCancelled once
    `stop()` is True, which ends the optimisation between epochs."""

    def __init__(self, report: Callable[[float], None], stop: ShouldStop) -> None:
        self.report, self.stop, self.cancelled = report, stop, False

    def write(self, text: str) -> None:
        found = re.search(r"(\d+)/(\d+)", text)
        if found is None or self.cancelled:
            return
        if self.stop():
            self.cancelled = True
            raise EmbeddingCancelled("the map was cancelled")
        self.report(int(found.group(1)) / max(int(found.group(2)), 1))

    def flush(self) -> None:
        return None


def _knn_placer(
    fit_x: np.ndarray, fit_coords: np.ndarray, params: EmbeddingParams
) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping cells to the mean map position of their k nearest fitted cells in marker space."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=params.placement_k, n_jobs=params.n_jobs).fit(fit_x)

    def place(rows: np.ndarray) -> np.ndarray:
        neighbours = index.kneighbors(rows, return_distance=False)
        return fit_coords[neighbours].mean(axis=1)

    return place


def _strata_members(strata: np.ndarray) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
    """Cells per stratum (in sorted order of the strata's values) and a function giving stratum s's rows, ascending.
    Small non-negative integers (sample ids) are counted with bincount and their rows found one stratum at a time,
    so a study of 50 M cells needs no sort of all its cells."""
    if np.issubdtype(strata.dtype, np.integer) and strata.size and 0 <= strata.min() and strata.max() < 1 << 16:
        counts = np.bincount(strata)
        values = np.flatnonzero(counts)
        return counts[values], lambda s: np.flatnonzero(strata == values[s])
    codes, sizes = np.unique(strata, return_inverse=True, return_counts=True)[1:]
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return sizes, lambda s: order[bounds[s]:bounds[s + 1]]


def stratified_subsample(n_cells: int, max_points: int, strata: np.ndarray | None, seed: int) -> np.ndarray:
    """Sorted row indices of at most `max_points` cells to draw, keeping rare strata visible.

    A fifth of the budget is shared equally among strata (a stratum smaller than its share is
    kept whole); the rest is split in proportion to the cells each stratum has left, so the map
    still shows true densities. Without strata it is a seeded uniform subsample.
    """
    if n_cells <= max_points:
        return np.arange(n_cells)
    if strata is None:
        return subsample(n_cells, max_points, seed)
    rng = np.random.default_rng(seed)
    sizes, members = _strata_members(np.asarray(strata))
    take = np.minimum(sizes, max_points // (5 * sizes.size))
    left = sizes - take
    budget = max_points - take.sum()
    extra = np.floor(left * budget / max(left.sum(), 1)).astype(np.int64)
    extra = np.minimum(extra, left)
    take += extra
    picks = [rng.choice(members(s), take[s], replace=False) for s in range(sizes.size)]
    return np.sort(np.concatenate(picks))
