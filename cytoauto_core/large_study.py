"""The journey for a study too big to hold in memory: fit on a seeded stratified subsample, then pass over every cell.

Statistics and previews come from a subsample of at most SUMMARY_CELLS spread over every sample; a clustering, a
map or a model is fitted on such a subsample (the same sizes the in-memory path fits on), and passes.py applies it
to every cell chunk by chunk. Exact per-cell results (clusters, map positions, labels, counts) come from the passes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .clustering.flowsom import ClusteringParams, FlowSOM
from .dataset import Dataset
from .embeddings import EmbeddingParams, embed
from .jobs import Progress, ShouldStop
from .passes import MapPlacer, assign_clusters, place_cells, stratified_rows, subset
from .stats import channel_stats
from .training import TrainingOutcome, TrainingRequest, train_and_apply
from .transforms import TransformSpec, transform_features

if TYPE_CHECKING:
    from distributed import Client

SUMMARY_CELLS = 200_000  # statistics, histograms and previews: enough for every quantile a plot shows


@dataclass
class Summary:
    """Per-channel statistics of a stated subsample (its rows and seed kept, so it can be redrawn exactly)."""

    rows: np.ndarray
    seed: int
    stats: pd.DataFrame

    @property
    def description(self) -> str:
        return f"statistics of {self.rows.size:,} cells drawn across samples (seed {self.seed})"


def _sub_features(dataset: Dataset, spec: TransformSpec, max_cells: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, transformed features) of a stratified subsample."""
    rows = stratified_rows(dataset, max_cells, seed)
    return rows, transform_features(subset(dataset, rows), spec)


def summarise(dataset: Dataset, spec: TransformSpec, seed: int = 0, max_cells: int = SUMMARY_CELLS) -> Summary:
    """Per-channel statistics (skewness, kurtosis, quantiles) of the transformed features of a subsample."""
    rows, x = _sub_features(dataset, spec, max_cells, seed)
    return Summary(rows, seed, channel_stats(x, spec.features))


def cluster_study(dataset: Dataset, spec: TransformSpec, params: ClusteringParams, path: Path,
                  client: Client | None = None, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> tuple[FlowSOM, np.ndarray]:
    """FlowSOM fitted on a subsample of params.max_fit_cells across samples; every cell's cluster written to `path`."""
    report = progress or (lambda fraction, message: None)
    _, x = _sub_features(dataset, spec, params.max_fit_cells, params.seed)
    model = FlowSOM(params).fit(x, lambda f, m: report(0.3 * f, m), should_stop)
    clusters = assign_clusters(dataset, spec, model, path, client, lambda f, m: report(0.3 + 0.7 * f, m), should_stop)
    return model, clusters


def map_study(dataset: Dataset, spec: TransformSpec, params: EmbeddingParams, model: FlowSOM, path: Path,
              client: Client | None = None, progress: Progress | None = None,
              should_stop: ShouldStop | None = None) -> tuple[np.ndarray, str]:
    """A map fitted on params.max_fit_cells cells across samples, every cell placed (MapPlacer, within the SOM nodes
    of `model`); returns the coordinates written to `path` and what was done, in words."""
    report = progress or (lambda fraction, message: None)
    rows, x = _sub_features(dataset, spec, params.max_fit_cells, params.seed)
    fitted = embed(x, params, lambda f, m: report(0.6 * f, m), should_stop)
    placer = MapPlacer.fit(x, fitted.coords, model, rows)
    coords = place_cells(dataset, spec, placer, path, client, lambda f, m: report(0.6 + 0.4 * f, m), should_stop)
    text = (f"{params.method.upper()} fitted on {rows.size:,} cells across samples (seed {params.seed}); the "
            f"{dataset.n_cells - rows.size:,} others placed by their nearest fitted cells within their SOM node.")
    return coords, text


def train_study(dataset: Dataset, spec: TransformSpec, labelled_rows: np.ndarray, labels: np.ndarray,
                names: dict[int, str], request: TrainingRequest, models_dir: Path, progress: Progress,
                should_stop: ShouldStop) -> TrainingOutcome:
    """Train as the Train page does on the labelled cells plus request.max_unlabeled unlabelled cells across samples
    (all a model sees anyway); the outcome's prediction covers those cells only: passes.predict_cells labels all."""
    started = time.perf_counter()
    labelled_rows = np.asarray(labelled_rows, np.int64)
    rows = np.union1d(labelled_rows, stratified_rows(dataset, request.max_unlabeled, request.seed))
    part = subset(dataset, rows)
    part_labels = np.full(rows.size, -1, np.int64)
    part_labels[np.searchsorted(rows, labelled_rows)] = labels
    outcome = train_and_apply(part, transform_features(part, spec), spec, part_labels, names, request, models_dir,
                              progress, should_stop)
    outcome.seconds = time.perf_counter() - started
    return outcome
