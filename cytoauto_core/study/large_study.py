"""The journey for a study too big to hold in memory: fit on a seeded stratified subsample, then pass over every cell.

Statistics and previews come from a subsample of at most SUMMARY_CELLS spread over every sample; a clustering, a
map or a model is fitted on such a subsample (the same sizes the in-memory path fits on), and passes.py applies it
to every cell chunk by chunk. Exact per-cell results (clusters, map positions, labels, counts) come from the passes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..base.contracts import Progress, ShouldStop
from ..base.dataset import Dataset
from ..prep.stats import channel_stats
from ..prep.transforms import TransformSpec, transform_features
from ..store.workspace import Workspace
from ..tools.clustering.flowsom import ClusteringParams, FlowSOM
from ..tools.embeddings import EmbeddingParams, embed
from ..tools.training import TrainingOutcome, TrainingRequest, train_and_apply
from .passes import MapPlacer, assign_clusters, place_cells, stratified_rows, subset

if TYPE_CHECKING:
    from distributed import Client

SUMMARY_CELLS = 200_000  # statistics, histograms and previews: enough for every quantile a plot shows
# a study larger than this is explored, labelled and trained on through its working sample ($CYTOAUTO_WORKING_CELLS)
WORKING_CELLS = int(os.environ.get("CYTOAUTO_WORKING_CELLS", "1000000"))
WORKING_SEED = 0
SAMPLE_OF = "CYTOAUTO_WORKING_SAMPLE_OF"  # metadata of a working sample: the key of the study it was drawn from
ROWS_ARRAY = "study_rows"  # a working sample's stored array: each of its cells' row in the study


@dataclass
class Summary:
    """Per-channel statistics of a stated subsample (its rows and seed kept, so it can be redrawn exactly)."""

    rows: np.ndarray
    seed: int
    stats: pd.DataFrame

    @property
    def description(self) -> str:
        return f"statistics of {self.rows.size:,} cells drawn across samples (seed {self.seed})"


@dataclass
class WorkingSample:
    """A stored stratified subsample of a large study that the app's pages work on (its own dataset in the workspace),
    with each of its cells' row in the study."""

    key: str
    study_key: str
    rows: np.ndarray
    seed: int

    def sentence(self, study: Dataset) -> str:
        return (f"This study has {study.n_cells:,} cells in {len(study.samples)} samples. The pages show a working "
                f"sample of {self.rows.size:,} cells drawn across all samples (seed {self.seed}); the whole-study "
                "results (every cell labelled, counts, exports) cover every cell.")


def is_large(dataset: Dataset) -> bool:
    """Whether the app should work on `dataset` through a working sample."""
    return dataset.n_cells > WORKING_CELLS and SAMPLE_OF not in dataset.metadata


def working_sample(workspace: Workspace, key: str, dataset: Dataset, max_cells: int | None = None,
                   seed: int = WORKING_SEED) -> WorkingSample:
    """The study's working sample (at most max_cells, WORKING_CELLS by default): made and stored once (read chunk by
    chunk), found again by the study's settings."""
    max_cells = WORKING_CELLS if max_cells is None else max_cells
    settings = workspace.load_settings(key) or {}
    known = settings.get("working_sample")
    if known and known.get("max_cells") == max_cells and known.get("seed") == seed \
            and workspace.has_dataset(known.get("key")):
        stored = workspace.load_array(known["key"], ROWS_ARRAY)
        if stored is not None:
            return WorkingSample(known["key"], key, np.asarray(stored[0]), seed)
    rows = stratified_rows(dataset, max_cells, seed)
    part = subset(dataset, rows)
    part.metadata = {**dataset.metadata, SAMPLE_OF: key}
    part.name = f"{dataset.name} (working sample)"
    sample_key = workspace.add_dataset(part)
    workspace.save_array(sample_key, ROWS_ARRAY, rows.astype(np.int64), {"study": key, "seed": seed})
    workspace.save_settings(key, {**(workspace.load_settings(key) or {}),
                                  "working_sample": {"key": sample_key, "max_cells": max_cells, "seed": seed}})
    return WorkingSample(sample_key, key, rows, seed)


def study_of(workspace: Workspace, dataset: Dataset) -> str | None:
    """The key of the study a working sample was drawn from (None for any other dataset, or when it is gone)."""
    key = dataset.metadata.get(SAMPLE_OF)
    return key if workspace.has_dataset(key) else None


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
