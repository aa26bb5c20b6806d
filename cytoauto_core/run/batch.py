"""Apply a saved model bundle to many files on Dask workers: the same labelled exports as the Results page, plus one abundance table."""
from __future__ import annotations

import glob
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..base.dataset import Dataset, make_unique
from ..base.errors import CytoInputError
from ..base.labelled import LabelledCells
from ..io import read_file
from ..io.export import abundance, csv_bytes, labelled_frame, legend_frame, write_labelled_fcs, write_labelled_h5ad
from ..prep.qc import MarkerReference, file_qc
from ..tools.models.bundle import BundleRef, predict_dataset, read_bundle_ref, worker_bundle

if TYPE_CHECKING:
    from distributed import Client

FORMATS = ("csv", "fcs", "h5ad")
CHUNK_CELLS = 1_000_000
DEFAULT_WORKERS = 2
SUMMARY_NAME = "abundance.csv"
# Once a file is read, its predictions and writer run before the next file is read (bounds worker memory).
READ_PRIORITY, FILE_PRIORITY = 0, 1


class BatchUsageError(CytoInputError):
    """The batch request itself is unusable (no bundle, no files, bad option): nothing was run."""


@dataclass
class FileResult:
    """One input's outcome: 'ok' or 'failed', cells labelled, summed task seconds, files written, error sentence."""

    input: str
    status: str
    cells: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class BatchReport:
    """Per-file rows, the abundance table's path (None when no file succeeded) and wall-clock seconds."""

    files: list[FileResult]
    abundance_path: Path | None
    seconds: float
    startup_seconds: float

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status != "ok"]

    @property
    def cells(self) -> int:
        return sum(f.cells for f in self.files)

    @property
    def exit_code(self) -> int:
        """0 when every file was labelled, 1 when some failed."""
        return 1 if self.failed else 0


@dataclass(frozen=True)
class _Job:
    """One input file and the unique output stem its exports get."""

    path: str
    name: str
    stem: str


@dataclass
class _Loaded:
    """A read file with its read time."""

    dataset: Dataset
    seconds: float


@dataclass
class _Chunk:
    """Predicted ids, confidence and novelty (None for bundles without unknown detection) for one row range of a
    file, with the time it took."""

    labels: np.ndarray
    confidence: np.ndarray
    novelty: np.ndarray | None
    seconds: float


@dataclass
class _Written:
    """What the writer task returns: the file's row and its abundance table."""

    result: FileResult
    table: pd.DataFrame


def resolve_inputs(inputs: Sequence[str]) -> list[Path]:
    """Expand globs (sorted, '**' allowed) and keep plain paths as given, dropping repeats; missing plain paths fail later, per file."""
    found: dict[str, Path] = {}
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        for m in matches:
            if not os.path.isdir(m):
                found.setdefault(os.path.abspath(m), Path(m))
    if not found:
        raise BatchUsageError(f"No input file matches {' '.join(inputs) or '(nothing given)'}.")
    return list(found.values())


def _class_names(ref: BundleRef) -> dict[int, str]:
    """Population names by id from the worker's cached bundle (loading and hash-checking it on first call)."""
    bundle = worker_bundle(ref)
    return {int(i): str(n) for i, n in zip(bundle.class_ids, bundle.class_names)}


def _read(path: str, name: str) -> _Loaded:
    started = time.perf_counter()
    return _Loaded(read_file(Path(path), name), time.perf_counter() - started)


def _n_cells(loaded: _Loaded) -> int:
    return loaded.dataset.n_cells


def _predict(loaded: _Loaded, start: int, stop: int, ref: BundleRef, threshold: float,
             rejection: float | None) -> _Chunk:
    """Labels for rows start:stop, exactly as predict_dataset gives them for the whole file."""
    started = time.perf_counter()
    ds = loaded.dataset
    p = predict_dataset(worker_bundle(ref), ds.events[start:stop], ds.channel_names, ds.spillover, threshold,
                        rejection=rejection)
    return _Chunk(p.labels.astype(np.int32), p.confidence, p.novelty, time.perf_counter() - started)


def _write(loaded: _Loaded, chunks: list[_Chunk], job: _Job, names: dict[int, str], out_dir: str,
           formats: tuple[str, ...], ref: BundleRef, threshold: float, rejection: float | None) -> _Written:
    """Join a file's chunks, write its exports (temp name, then rename) and count its populations."""
    started = time.perf_counter()
    ds = loaded.dataset
    cells = LabelledCells(np.concatenate([c.labels for c in chunks]), names,
                          np.concatenate([c.confidence for c in chunks]),
                          novelty=None if chunks[0].novelty is None else np.concatenate([c.novelty for c in chunks]))
    outputs = []
    for fmt in formats:
        path = Path(out_dir) / f"{job.stem}_labelled.{fmt}"
        tmp = path.with_name(f".{path.name}.partial")
        if fmt == "csv":
            tmp.write_bytes(csv_bytes(labelled_frame(ds, cells)))
        elif fmt == "fcs":
            write_labelled_fcs(tmp, ds, cells)
        else:
            bundle = worker_bundle(ref)
            write_labelled_h5ad(tmp, ds, bundle.spec, cells, provenance={
                "model": bundle.classifier.kind, "model_name": bundle.name, "bundle_hash": ref.bundle_hash,
                "seed": bundle.seed, "threshold": threshold, "bundle_versions": bundle.versions,
                **({} if bundle.novelty is None else {"rejection": bundle.novelty.rejection if rejection is None
                                                      else rejection})})
        tmp.replace(path)
        outputs.append(str(path))
    if "fcs" in formats:  # beside the FCS: what each population_id means
        legend = Path(out_dir) / f"{job.stem}_legend.csv"
        tmp = legend.with_name(f".{legend.name}.partial")
        legend_frame(cells).to_csv(tmp, index=False)
        tmp.replace(legend)
        outputs.append(str(legend))
    table = abundance(cells.population_id, names, ds.sample_ids, ds.samples)
    table.insert(0, "file", job.path)
    bundle = worker_bundle(ref)  # QC columns: confidence, unassigned share, drift from the training data
    table = table.assign(**file_qc(ds, cells, bundle.spec, MarkerReference.from_params(bundle.params)).columns())
    seconds = loaded.seconds + sum(c.seconds for c in chunks) + time.perf_counter() - started
    return _Written(FileResult(job.path, "ok", ds.n_cells, seconds, outputs), table)


def _task_failure(future, name: str) -> str:
    """One sentence for a task that errored (the file's own error, or a worker lost 3 times) or was cancelled."""
    if future.status == "error":
        return _sentence(future.exception(), name)
    return f"'{name}' was not processed: its task was {future.status} on the cluster."


def _sentence(exc: BaseException, name: str) -> str:
    """A user's file error is already one sentence; anything else is wrapped into one naming the file."""
    if isinstance(exc, CytoInputError):
        return str(exc)
    return f"'{name}' could not be processed ({type(exc).__name__}: {exc})."


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, or of an embedded LocalCluster (processes, one thread each, no dashboard)."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers or DEFAULT_WORKERS, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        yield client


def _check_options(formats: Sequence[str], threshold: float, rejection: float | None, chunk_cells: int,
                   scheduler: str | None, workers: int | None) -> tuple[str, ...]:
    """Validate the options before any cluster starts; return the formats in a fixed order."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise BatchUsageError(f"The output formats must be among csv, fcs and h5ad (got {', '.join(unknown) or 'none'}).")
    if not 0.0 <= threshold <= 1.0:
        raise BatchUsageError(f"The threshold must be between 0 and 1 (got {threshold}).")
    if rejection is not None and not 0.0 <= rejection < 1.0:
        raise BatchUsageError(f"--unknown must be a share of known cells from 0 (off) to below 1 (got {rejection}).")
    if chunk_cells < 1:
        raise BatchUsageError(f"--chunk-cells must be a positive number of cells (got {chunk_cells}).")
    if workers is not None and (workers < 1 or scheduler):
        raise BatchUsageError("--workers must be positive and applies only to the embedded cluster, not with --scheduler.")
    return tuple(f for f in FORMATS if f in formats)


def apply_to_files(
    bundle_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, formats: Sequence[str] = ("csv",),
    threshold: float = 0.5, scheduler: str | None = None, workers: int | None = None,
    chunk_cells: int = CHUNK_CELLS, progress: bool = True, rejection: float | None = None,
) -> BatchReport:
    """Label every input with the bundle on Dask (files and chunks of `chunk_cells` events are the tasks). Cells
    below the confidence `threshold` are unassigned; with the bundle's unknown detection, cells more novel than the
    `rejection` share of known cells allows (the bundle's own level when None) are unknown.

    Paths must be visible to every worker (shared file system when `scheduler` is a remote cluster).
    Raises BatchUsageError before anything runs when the request is unusable.
    """
    started = time.perf_counter()
    formats = _check_options(formats, threshold, rejection, chunk_cells, scheduler, workers)
    try:
        ref = read_bundle_ref(bundle_dir)
    except CytoInputError as exc:
        raise BatchUsageError(str(exc)) from exc
    paths = resolve_inputs([str(p) for p in inputs])
    stems = make_unique([p.stem for p in paths])
    jobs = [_Job(str(p), p.name, s) for p, s in zip(paths, stems)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with dask_client(scheduler, workers) as client:
        try:
            names = next(iter(client.run(_class_names, ref).values()))  # every worker loads it now, once
        except CytoInputError as exc:
            raise BatchUsageError(str(exc)) from exc
        startup = time.perf_counter() - started
        written = _run(client, jobs, ref, names, str(out), formats, threshold, rejection, chunk_cells, progress)
    rows = [written[j].result if isinstance(written[j], _Written) else written[j] for j in jobs]
    tables = [w.table for w in written.values() if isinstance(w, _Written)]
    summary = None
    if tables:
        summary = out / SUMMARY_NAME
        pd.concat(tables, ignore_index=True).to_csv(summary, index=False, float_format="%.4f")
    return BatchReport(rows, summary, time.perf_counter() - started, startup)


def _run(client: Client, jobs: list[_Job], ref: BundleRef, names: dict[int, str], out_dir: str, formats: tuple[str, ...],
         threshold: float, rejection: float | None, chunk_cells: int,
         progress: bool) -> dict[_Job, _Written | FileResult]:
    """Submit reads up front; when a file's size is known, submit its chunk predictions and writer; collect as they finish."""
    from distributed import as_completed
    from tqdm import tqdm

    pending: dict = {}
    done: dict[_Job, _Written | FileResult] = {}
    finished = as_completed()
    for job in jobs:
        loaded = client.submit(_read, job.path, job.name, pure=False, priority=READ_PRIORITY)
        size = client.submit(_n_cells, loaded, pure=False, priority=FILE_PRIORITY)
        pending[size] = (job, loaded)
        finished.add(size)
    with tqdm(total=len(jobs), unit="file", file=sys.stderr, disable=not progress) as bar:
        for future in finished:
            job, loaded = pending.pop(future)
            if future.status != "finished":
                done[job] = FileResult(job.path, "failed", error=_task_failure(future, job.name))
            elif loaded is not None:
                n = future.result()
                chunks = [client.submit(_predict, loaded, s, min(s + chunk_cells, n), ref, threshold, rejection,
                                        pure=False, priority=FILE_PRIORITY) for s in range(0, max(n, 1), chunk_cells)]
                writer = client.submit(_write, loaded, chunks, job, names, out_dir, formats, ref, threshold,
                                       rejection, pure=False, priority=FILE_PRIORITY)
                pending[writer] = (job, None)
                finished.add(writer)
                continue
            else:
                done[job] = future.result()
            bar.update()
            bar.set_postfix(failed=sum(isinstance(d, FileResult) for d in done.values()), refresh=False)
    return done
