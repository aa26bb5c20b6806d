"""The per-cell passes over a stored study, streamed in row chunks: in this process or as tasks on a Dask cluster.

Each pass reads its chunk of events from the dataset's events.npy (chunks.read_rows: nothing stays resident),
transforms it, and writes its per-cell result into an .npy file at the chunk's rows (chunks.ArrayFile), returning
only small per-chunk summaries (counts per sample). What needs all cells at once (fitting a clustering, a map or a
model) is fitted on a seeded stratified subsample across samples, and the pass then places every cell. So memory
holds a few chunks and the fitted models, whatever the study's size; workers need only see the same files.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from ..base.chunks import CHUNK_ROWS, ArrayFile, gather_rows, iter_rows, mapped_file, read_rows, row_ranges
from ..base.contracts import JobCancelled, Progress, ShouldStop
from ..base.dataset import NOT_CALLED, Dataset, Spillover
from ..base.errors import CytoInputError
from ..prep.transforms import TransformSpec, transform_events
from ..tools.clustering.flowsom import FlowSOM
from ..tools.clustering.som import nearest_node
from ..tools.embeddings import stratified_subsample

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
PLACE_K = 10  # a cell's map position: the mean of its nearest fitted cells within its SOM node


@dataclass(frozen=True)
class EventsRef:
    """How any process (a Dask worker included) reads a stored dataset's events: the file and its channels."""

    path: str
    names: tuple[str, ...]
    spillover: Spillover | None
    n_cells: int

    @classmethod
    def of(cls, dataset: Dataset) -> "EventsRef":
        """The reference of a dataset opened from a workspace (events memory-mapped from their file)."""
        source = mapped_file(dataset.events)
        if source is None:
            raise ValueError("the per-cell passes need a stored dataset (Workspace.load_dataset)")
        return cls(source[0], tuple(dataset.channel_names), dataset.spillover, dataset.n_cells)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return read_rows(np.load(self.path, mmap_mode="r"), start, stop)

    def features(self, start: int, stop: int, spec: TransformSpec) -> np.ndarray:
        """Transformed features of rows start:stop."""
        return transform_events(self.rows(start, stop), list(self.names), spec, self.spillover)


def run_chunks(task: Callable[[int, int], T], n_rows: int, client: Client | None = None,
               progress: Progress | None = None, should_stop: ShouldStop | None = None, what: str = "cells",
               chunk_rows: int = CHUNK_ROWS) -> list[T]:
    """task(start, stop) for every chunk of rows, in order of rows; on the Dask `client` when given (tasks run as
    they can, cancelled when should_stop() turns true), else one after another here."""
    report = progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    ranges = row_ranges(n_rows, CHUNK_ROWS)
    if client is None:
        results = []
        for k, (start, end) in enumerate(ranges):
            if stop():
                raise JobCancelled()
            report(k / max(len(ranges), 1), f"{what}: {start:,} of {n_rows:,} cells")
            results.append(task(start, end))
        return results
    from distributed import as_completed

    futures = [client.submit(task, start, end, pure=False) for start, end in ranges]
    position = {f.key: k for k, f in enumerate(futures)}
    out: list = [None] * len(futures)
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            if stop():
                raise JobCancelled()
            out[position[future.key]] = future.result()
            report(done / len(futures), f"{what}: {done} of {len(futures)} chunks on the cluster")
    finally:
        client.cancel([f for f in futures if not f.done()])
    return out


def stratified_rows(dataset: Dataset, max_cells: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of a seeded subsample of at most `max_cells`, every sample represented (embeddings'
    stratified_subsample over samples)."""
    return stratified_subsample(dataset.n_cells, max_cells, np.asarray(dataset.sample_ids), seed)


def subset(dataset: Dataset, rows: np.ndarray) -> Dataset:
    """The cells at sorted `rows` as an in-memory dataset of their own (read chunk by chunk from a stored one)."""
    return Dataset(events=gather_rows(dataset.events, rows), channels=dataset.channels, samples=dataset.samples,
                   sample_ids=np.asarray(dataset.sample_ids)[rows],
                   annotations=dataset.annotations.iloc[rows].reset_index(drop=True),
                   spillover=dataset.spillover, metadata=dataset.metadata, warnings=[], name=dataset.name)


def per_sample_counts(values: np.ndarray, sample_ids: np.ndarray, n_samples: int, codes: Sequence[int]) -> np.ndarray:
    """Cells per (sample, code) for one chunk: a n_samples × len(codes) int64 table (`codes` sorted, holding every
    value)."""
    column = np.searchsorted(np.asarray(codes, np.int64), np.asarray(values, np.int64))
    flat = np.asarray(sample_ids, np.int64) * len(codes) + column
    return np.bincount(flat, minlength=n_samples * len(codes)).reshape(n_samples, len(codes))


def count_per_sample(values: np.ndarray, sample_ids: np.ndarray, n_samples: int, codes: Sequence[int]) -> np.ndarray:
    """Cells per (sample, code) of a per-cell result on disk (a memory-mapped .npy such as assign_clusters writes),
    read chunk by chunk with its sample ids: per_sample_counts of every chunk, summed (one chunk in memory)."""
    total = np.zeros((n_samples, len(codes)), np.int64)
    for start, chunk in iter_rows(values, CHUNK_ROWS):
        total += per_sample_counts(chunk, read_rows(sample_ids, start, start + chunk.shape[0]), n_samples, codes)
    return total


# --- clustering ---------------------------------------------------------------------------------------------------

def _assign_chunk(ref: EventsRef, spec: TransformSpec, codes: np.ndarray, scale: np.ndarray, node_clusters: np.ndarray,
                  out: ArrayFile, start: int, stop: int) -> None:
    x = ref.features(start, stop, spec)
    out.write_rows(start, node_clusters[nearest_node(x, codes, scale)].astype(np.int16))


def assign_clusters(dataset: Dataset, spec: TransformSpec, model: FlowSOM, path: Path, client: Client | None = None,
                    progress: Progress | None = None, should_stop: ShouldStop | None = None) -> np.ndarray:
    """Every cell's cluster by the fitted `model`, written to `path` (int16 .npy) and returned memory-mapped."""
    ref = EventsRef.of(dataset)
    out = ArrayFile.create(path, (dataset.n_cells,), np.int16)
    task = partial(_assign_chunk, ref, spec, model.codes, model.scale, model.node_clusters, out)
    run_chunks(task, dataset.n_cells, client, progress, should_stop, "clustering")
    return out.open()


# --- maps ---------------------------------------------------------------------------------------------------------

@dataclass
class MapPlacer:
    """Places any cell on a map fitted to a subsample: the mean position of its PLACE_K nearest fitted cells among
    those of its own SOM node (the k-NN placement of embeddings, searched within a node, so it costs ~1/100 of it);
    the fitted cells themselves (dataset rows `rows`) keep their positions."""

    codes: np.ndarray
    scale: np.ndarray
    fit_x: np.ndarray  # fitted cells ordered by node
    fit_coords: np.ndarray
    fit_nodes: np.ndarray
    rows: np.ndarray  # sorted dataset rows of the fitted cells, and their positions
    coords: np.ndarray

    @classmethod
    def fit(cls, fit_x: np.ndarray, fit_coords: np.ndarray, model: FlowSOM, rows: np.ndarray) -> "MapPlacer":
        """From the fitted cells (dataset rows `rows`, sorted), their features and map positions."""
        nodes = nearest_node(fit_x, model.codes, model.scale)
        order = np.argsort(nodes, kind="stable")
        coords = np.asarray(fit_coords, np.float32)
        return cls(model.codes, model.scale, fit_x[order], coords[order], nodes[order], np.asarray(rows, np.int64),
                   coords)

    def place_rows(self, x: np.ndarray, start: int) -> np.ndarray:
        """Positions of dataset rows start:start + len(x): placed, or as fitted for the fitted cells."""
        out = self.place(x)
        lo, hi = np.searchsorted(self.rows, [start, start + x.shape[0]])
        out[self.rows[lo:hi] - start] = self.coords[lo:hi]
        return out

    def place(self, x: np.ndarray) -> np.ndarray:
        nodes = nearest_node(x, self.codes, self.scale)
        out = np.empty((x.shape[0], 2), np.float32)
        bounds = np.searchsorted(self.fit_nodes, np.arange(self.codes.shape[0] + 1))
        for node in np.unique(nodes):
            rows = np.flatnonzero(nodes == node)
            lo, hi = bounds[node], bounds[node + 1]
            if hi - lo == 0:  # a node without fitted cells: search them all
                lo, hi = 0, self.fit_x.shape[0]
            ref = self.fit_x[lo:hi]
            d = (x[rows] ** 2).sum(1)[:, None] - 2.0 * x[rows] @ ref.T + (ref ** 2).sum(1)[None]
            k = min(PLACE_K, hi - lo)
            near = np.argpartition(d, k - 1, axis=1)[:, :k]
            out[rows] = self.fit_coords[lo:hi][near].mean(axis=1)
        return out


def _place_chunk(ref: EventsRef, spec: TransformSpec, placer: MapPlacer, out: ArrayFile, start: int, stop: int) -> None:
    out.write_rows(start, placer.place_rows(ref.features(start, stop, spec), start))


def place_cells(dataset: Dataset, spec: TransformSpec, placer: MapPlacer, path: Path, client: Client | None = None,
                progress: Progress | None = None, should_stop: ShouldStop | None = None) -> np.ndarray:
    """Every cell's map position (n × 2 float32 .npy at `path`, returned memory-mapped)."""
    ref = EventsRef.of(dataset)
    out = ArrayFile.create(path, (dataset.n_cells, 2), np.float32)
    run_chunks(partial(_place_chunk, ref, spec, placer, out), dataset.n_cells, client, progress, should_stop, "placing")
    return out.open()


# --- prediction ---------------------------------------------------------------------------------------------------

@dataclass
class StudyPrediction:
    """Per-cell results of a model on every cell, memory-mapped from their files, and the exact counts per sample."""

    population_id: np.ndarray  # int16: class id, -1 unassigned, -2 unknown
    confidence: np.ndarray  # float32
    novelty: np.ndarray | None  # float32, None for models without unknown detection
    counts: pd.DataFrame  # samples × population names (unassigned and unknown included)
    seconds: float


def _predict_chunk(ref: EventsRef, bundle_ref, threshold: float, rejection: float | None, sample_ids: ArrayFile,
                   outs: tuple[ArrayFile, ArrayFile, ArrayFile | None], n_samples: int, codes: tuple[int, ...],
                   start: int, stop: int) -> np.ndarray:
    from ..tools.models.bundle import predict_dataset, worker_bundle

    p = predict_dataset(worker_bundle(bundle_ref), ref.rows(start, stop), list(ref.names), ref.spillover, threshold,
                        rejection=rejection)
    labels, confidence, novelty = outs
    labels.write_rows(start, p.labels.astype(np.int16))
    confidence.write_rows(start, p.confidence)
    if novelty is not None and p.novelty is not None:
        novelty.write_rows(start, p.novelty)
    return per_sample_counts(p.labels, read_rows(sample_ids.open(), start, stop), n_samples, codes)


def predict_cells(dataset: Dataset, bundle_dir: Path | str, folder: Path, threshold: float = 0.5,
                  rejection: float | None = None, client: Client | None = None, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> StudyPrediction:
    """Apply a saved model bundle to every cell, writing population_id/confidence/novelty .npy files in `folder`."""
    from ..tools.models.bundle import read_bundle_ref, worker_bundle

    started = time.perf_counter()
    ref = EventsRef.of(dataset)
    bundle_ref = read_bundle_ref(bundle_dir)
    bundle = worker_bundle(bundle_ref)
    missing = [c for c in bundle.spec.features if c not in ref.names]
    if missing:
        raise CytoInputError(f"'{dataset.name}' lacks channel '{missing[0]}', which the model '{bundle.name}' needs.")
    folder.mkdir(parents=True, exist_ok=True)
    n = dataset.n_cells
    ids_file = _sample_ids_file(dataset, folder)
    outs = (ArrayFile.create(folder / "population_id.npy", (n,), np.int16),
            ArrayFile.create(folder / "confidence.npy", (n,), np.float32),
            None if bundle.novelty is None else ArrayFile.create(folder / "novelty.npy", (n,), np.float32))
    names = {int(i): str(c) for i, c in zip(bundle.class_ids, bundle.class_names)} | NOT_CALLED
    codes = tuple(sorted(names))
    task = partial(_predict_chunk, ref, bundle_ref, threshold, rejection, ids_file, outs, len(dataset.samples), codes)
    tables = run_chunks(task, n, client, progress, should_stop, "labelling")
    counts = pd.DataFrame(np.sum(tables, axis=0) if tables else np.zeros((len(dataset.samples), len(codes)), np.int64),
                          index=pd.Index(dataset.samples, name="sample"), columns=[names[c] for c in codes])
    return StudyPrediction(outs[0].open(), outs[1].open(), None if outs[2] is None else outs[2].open(), counts,
                           time.perf_counter() - started)


def _sample_ids_file(dataset: Dataset, folder: Path) -> ArrayFile:
    """The dataset's sample ids as a file workers can read (the stored one, else written beside the results)."""
    source = mapped_file(dataset.sample_ids) if isinstance(dataset.sample_ids, np.memmap) else None
    if source is not None:
        return ArrayFile(source[0], (dataset.n_cells,), np.dtype(dataset.sample_ids.dtype).str)
    out = ArrayFile.create(folder / "sample_ids.npy", (dataset.n_cells,), np.int32)
    out.write_rows(0, np.asarray(dataset.sample_ids, np.int32))
    return out
