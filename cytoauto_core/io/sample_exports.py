"""Exports of a stored study with bounded memory: one file per sample, one CSV streamed in row chunks, and the
abundance table counted chunk by chunk.

The whole-dataset exporters in `export` hold every cell at once (a 10 M-cell FCS export peaks at 8.4 GB). Here a
memory-mapped study is read one sample (FCS, CSV, .h5ad per sample) or one row chunk (the study CSV, the counts) at a
time with `chunks.read_rows` / `chunks.gather_rows`, so memory is bounded by the largest sample or by a chunk, and
every file is still written by the same exporter, so it holds the same columns and channels.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..base import chunks
from ..base.contracts import JobCancelled
from ..base.dataset import UNKNOWN_ID, Dataset, make_unique
from ..base.labelled import LabelledCells, names_of
from ..base.storage import atomic_file
from ..prep.transforms import TransformSpec, default_spec
from .export import _safe_stem, labelled_frame, legend_frame, write_labelled_fcs, write_labelled_h5ad

FORMATS = ("csv", "fcs", "h5ad")
LEGEND_NAME = "legend.csv"
# A CSV chunk is held about four times over (events, frame, Arrow table, names); 65,536 rows of 40 channels peak at
# ~75 MB and write as fast as 262,144 rows (~170 MB): 3 M cells in ~15 s either way.
CSV_CHUNK_ROWS = 65_536
Rows = slice | np.ndarray  # a sample's cells: one contiguous run of rows, or sorted row numbers


def write_sample_exports(out_dir: Path | str, dataset: Dataset, cells: LabelledCells,
                         formats: Sequence[str] = ("fcs",), spec: TransformSpec | None = None,
                         progress: Callable[[float, str], None] | None = None,
                         should_stop: Callable[[], bool] | None = None, *, colors: dict[int, str] | None = None,
                         maps: dict[str, np.ndarray] | None = None, provenance: dict | None = None) -> list[Path]:
    """Write `<sample>_labelled.<fmt>` for every sample with cells (plus legend.csv once with FCS); return the paths.

    Only one sample is in memory at a time. `spec` (the .h5ad features) defaults to default_spec of the whole
    dataset, so every sample gets the same transform; `maps` (obsm key → per-cell n × 2) and `provenance` go to each
    .h5ad as write_labelled_h5ad writes them. JobCancelled between samples once `should_stop()` is True.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be among {FORMATS} (got {list(formats)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "h5ad" in formats and spec is None:
        spec = default_spec(dataset)
    stems = make_unique([_safe_stem(name) for name in dataset.samples])
    runs = sample_rows(dataset.sample_ids, len(dataset.samples))
    written: list[Path] = []
    counts: Counter[int] = Counter()
    for done, (sample, rows) in enumerate(runs.items()):
        if should_stop is not None and should_stop():
            raise JobCancelled("The export was cancelled.")
        if progress is not None:
            progress(done / len(runs), f"exporting {dataset.samples[sample]} ({done + 1} of {len(runs)} samples)")
        paths = [out / f"{stems[sample]}_labelled.{fmt}" for fmt in dict.fromkeys(formats)]
        counts.update(_export_sample(paths, dataset, sample, rows, cells, spec, colors, maps or {}, provenance))
        written += paths
    if "fcs" in formats:
        legend = _legend(cells, counts, colors)
        path = out / LEGEND_NAME
        _replace_into(path, lambda tmp: legend.to_csv(tmp, index=False))
        written.append(path)
    if progress is not None:
        progress(1.0, f"exported {len(runs)} samples")
    return written


def _export_sample(paths: list[Path], dataset: Dataset, sample: int, rows: Rows, cells: LabelledCells,
                   spec: TransformSpec | None, colors: dict[int, str] | None, maps: dict[str, np.ndarray],
                   provenance: dict | None) -> dict[int, int]:
    """Read one sample, write its files (the format is each path's suffix) and return its cells per population id;
    its arrays are freed on return, before the next sample is read."""
    part, part_cells = _sample_part(dataset, sample, rows), _cells_part(cells, rows)
    part_maps = {key: _take(coords, rows) for key, coords in maps.items()}
    for path in paths:
        _replace_into(path, lambda tmp: _write_part(tmp, path.suffix[1:], part, part_cells, spec, colors, part_maps,
                                                    provenance))
    ids, n = np.unique(part_cells.population_id, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n)}


def _write_part(path: Path, fmt: str, part: Dataset, cells: LabelledCells, spec: TransformSpec | None,
                colors: dict[int, str] | None, maps: dict[str, np.ndarray], provenance: dict | None) -> None:
    """One sample's file in one format, by the whole-dataset exporter of that format."""
    if fmt == "fcs":
        write_labelled_fcs(path, part, cells, np.arange(part.n_cells))
    elif fmt == "csv":
        with open(path, "wb") as handle:
            _csv_to(handle, part, cells, CSV_CHUNK_ROWS)
    else:
        write_labelled_h5ad(path, part, spec, cells, colors=colors, maps=maps, provenance=provenance)


def _replace_into(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` under a temp name beside it, then rename (never half a file under the final name)."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _legend(cells: LabelledCells, counts: Counter[int], colors: dict[int, str] | None) -> pd.DataFrame:
    """legend_frame's table for all cells, from per-id counts gathered sample by sample (no pass over every id)."""
    frame = legend_frame(replace(cells, population_id=np.empty(0, np.int32)), colors)
    frame["cells"] = [int(counts.get(pid, 0)) for pid in frame["population_id"]]
    return frame


def sample_rows(sample_ids: np.ndarray, n_samples: int, chunk_rows: int = chunks.CHUNK_ROWS) -> dict[int, Rows]:
    """Each sample with cells → its rows: a slice when they are one run (samples stored one after another), else the
    sorted row numbers. Found from the runs of equal ids, read chunk by chunk."""
    starts, values = [], []
    previous = None
    for start, block in chunks.iter_rows(sample_ids, chunk_rows):
        cuts = np.flatnonzero(block[1:] != block[:-1]) + 1
        if previous is None or block[0] != previous:
            cuts = np.r_[0, cuts]
        starts.append(cuts + start)
        values.append(block[cuts])
        previous = block[-1]
    begin = np.concatenate(starts) if starts else np.empty(0, np.int64)
    end = np.r_[begin[1:], len(sample_ids)]
    ids = np.concatenate(values) if values else np.empty(0, np.int64)
    found: dict[int, Rows] = {}
    for sample in range(n_samples):
        mine = np.flatnonzero(ids == sample)
        if len(mine) == 1:
            found[sample] = slice(int(begin[mine[0]]), int(end[mine[0]]))
        elif len(mine) > 1:
            found[sample] = _run_rows(begin[mine], end[mine])
    return found


def _run_rows(begin: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The row numbers of runs begin[i]:end[i], in order."""
    lengths = end - begin
    offsets = np.repeat(begin - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def _take(array: np.ndarray, rows: Rows) -> np.ndarray:
    """array[rows], read from its file when it is memory-mapped (nothing of the mapping stays resident)."""
    if isinstance(rows, slice):
        return chunks.read_rows(array, rows.start, rows.stop)
    return chunks.gather_rows(array, rows)


def _sample_part(dataset: Dataset, sample: int, rows: Rows) -> Dataset:
    """One sample's cells as a dataset of their own, with that sample as its only one."""
    events = _take(dataset.events, rows)
    return replace(dataset, events=events, samples=[dataset.samples[sample]],
                   sample_ids=np.zeros(len(events), np.int32), annotations=_annotation_rows(dataset, rows),
                   name=dataset.samples[sample])


def _rows_part(dataset: Dataset, start: int, stop: int) -> Dataset:
    """Rows start:stop of a dataset, every sample kept (a chunk of the study CSV)."""
    rows = slice(start, stop)
    return replace(dataset, events=_take(dataset.events, rows), sample_ids=_take(dataset.sample_ids, rows),
                   annotations=_annotation_rows(dataset, rows))


def _annotation_rows(dataset: Dataset, rows: Rows) -> pd.DataFrame:
    """The annotation rows of `rows`, indexed from 0."""
    if not len(dataset.annotations.columns):
        return pd.DataFrame()
    return dataset.annotations.iloc[rows].reset_index(drop=True)


def _cells_part(cells: LabelledCells, rows: Rows) -> LabelledCells:
    """The per-cell results of `rows` (probabilities are not exported per sample)."""
    def part(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else _take(values, rows)

    return LabelledCells(part(cells.population_id), cells.names, part(cells.confidence), coords=part(cells.coords),
                         novelty=part(cells.novelty))


def write_csv_stream(path: Path | str, dataset: Dataset, cells: LabelledCells,
                     chunk_rows: int = CSV_CHUNK_ROWS) -> Path:
    """One CSV of every cell, the bytes csv_bytes(labelled_frame(dataset, cells)) gives, written one row chunk at a
    time (atomically) so memory does not grow with the cells."""
    path = Path(path)
    with atomic_file(path) as handle:
        _csv_to(handle, dataset, cells, chunk_rows)
    return path


def _csv_to(handle: BinaryIO, dataset: Dataset, cells: LabelledCells, chunk_rows: int) -> None:
    """labelled_frame's CSV of `dataset` chunk by chunk into an open binary handle, the header once (alone when
    there is no cell)."""
    for start, stop in chunks.row_ranges(max(dataset.n_cells, 1), chunk_rows):
        stop = min(stop, dataset.n_cells)
        frame = labelled_frame(_rows_part(dataset, start, stop), _cells_part(cells, slice(start, stop)))
        pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), handle,
                        pacsv.WriteOptions(include_header=start == 0))


def count_populations(population_id: np.ndarray, names: dict[int, str], sample_ids: np.ndarray,
                      samples: list[str], chunk_rows: int = chunks.CHUNK_ROWS) -> pd.DataFrame:
    """export.abundance's table (cells and percent per sample and population), counted chunk by chunk with
    np.bincount over (sample, population id), so memory does not grow with the cells."""
    top = max(names, default=-1)
    width = top - UNKNOWN_ID + 2  # ids -2..top, then one slot for every other id (unassigned, as names_of says)
    table = np.zeros(len(samples) * width, np.int64)
    for start, stop in chunks.row_ranges(len(population_id), chunk_rows):
        ids = chunks.read_rows(population_id, start, stop).astype(np.int64)
        slot = np.where((ids < UNKNOWN_ID) | (ids > top), width - 1, ids - UNKNOWN_ID)
        table += np.bincount(chunks.read_rows(sample_ids, start, stop).astype(np.int64) * width + slot,
                             minlength=table.size)
    sample, slot = np.divmod(np.flatnonzero(table), width)
    frame = pd.DataFrame({"sample": np.asarray(samples, dtype=object)[sample],
                          "population": names_of(np.where(slot == width - 1, -1, slot + UNKNOWN_ID), names),
                          "cells": table[table > 0]})
    counts = frame.groupby(["sample", "population"])["cells"].sum().reset_index()
    counts["percent"] = 100 * counts["cells"] / counts.groupby("sample")["cells"].transform("sum")
    return counts
