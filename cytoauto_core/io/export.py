"""Exports of labelled cells: CSV, FCS with appended channels, AnnData .h5ad, abundance tables and a JSON summary."""
from __future__ import annotations

import io
import re
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..base.dataset import NOT_CALLED, UNASSIGNED_ID, UNKNOWN, UNKNOWN_ID, Dataset, event_ids, make_unique
from ..base.errors import CytoInputError
from ..base.labelled import LabelledCells, names_of
from ..base.storage import atomic_file
from ..prep.transforms import TransformSpec, transform_features

FLOAT32_EXACT = 2 ** 24  # every whole number below this is exact in float32, the FCS writer's data type


def labelled_frame(dataset: Dataset, cells: LabelledCells, features: np.ndarray | None = None,
                   feature_names: list[str] | None = None, include_probabilities: bool = False) -> pd.DataFrame:
    """One row per cell: original channels (named by marker), optional transformed features, population id/name,
    confidence, map, sample."""
    frame = pd.DataFrame(np.asarray(dataset.events), columns=marker_columns(dataset), copy=False)
    if features is not None:
        for j, name in enumerate(feature_names or []):
            frame[f"{name}_transformed"] = features[:, j]
    frame["population_id"] = np.asarray(cells.population_id, dtype=np.int32)
    frame["population"] = cells.population_names()
    if cells.confidence is not None:
        frame["confidence"] = cells.confidence
    if cells.novelty is not None:
        frame["novelty"] = cells.novelty
    if include_probabilities and cells.probabilities is not None:
        for i, name in sorted(cells.names.items()):
            frame[f"p_{name}"] = cells.probabilities[:, i]
    if cells.coords is not None:
        frame["map_x"], frame["map_y"] = cells.coords[:, 0], cells.coords[:, 1]
    frame["sample"] = np.asarray(dataset.samples, dtype=object)[np.asarray(dataset.sample_ids)]
    for column in dataset.annotations.columns:
        frame[f"annotation_{column}"] = dataset.annotations[column].to_numpy()
    return frame


def marker_columns(dataset: Dataset) -> list[str]:
    """Column names for the original channels of a table export: the marker ($PnS, e.g. CD3) a biologist reads, the
    detector ($PnN, e.g. Er170Di) where a marker would clash with another column."""
    reserved = {"population_id", "population", "confidence", "novelty", "map_x", "map_y", "sample"}
    markers = [c.name if c.marker in reserved else c.marker for c in dataset.channels]
    return make_unique(markers)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV bytes (pyarrow's multi-threaded writer: ~10× pandas on millions of cells)."""
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def write_labelled_fcs(path: Path, dataset: Dataset, cells: LabelledCells, event_id: np.ndarray | None = None) -> None:
    """Write the original events and metadata plus event_id, confidence, novelty, map_x/map_y and population_id
    channels.

    event_id is each cell's row in its own sample's file (0-based; given when `dataset` is a subset of a larger
    one), so a FlowJo user can join the labels back.
    """
    from . import write_fcs

    ids = event_ids(dataset.sample_ids) if event_id is None else event_id
    if len(ids) and int(np.max(ids)) >= FLOAT32_EXACT:
        raise CytoInputError(f"'{dataset.name}' has a sample of more than {FLOAT32_EXACT:,} events, whose event ids "
                             "an FCS float channel cannot hold exactly; export it as CSV or .h5ad instead.")
    extra = {"event_id": np.asarray(ids, dtype=np.float32)}
    if cells.confidence is not None:
        extra["confidence"] = np.asarray(cells.confidence, dtype=np.float32)
    if cells.novelty is not None:
        extra["novelty"] = np.asarray(cells.novelty, dtype=np.float32)
    if cells.coords is not None:
        extra["map_x"] = np.asarray(cells.coords[:, 0], dtype=np.float32)
        extra["map_y"] = np.asarray(cells.coords[:, 1], dtype=np.float32)
    extra["population_id"] = np.asarray(cells.population_id, dtype=np.float32)  # last: the reader drops it as a view
    names = dict(cells.names) | ({UNKNOWN_ID: UNKNOWN} if (np.asarray(cells.population_id) == UNKNOWN_ID).any() else {})
    write_fcs(path, dataset, extra_channels=extra, population_names=names)


def legend_frame(cells: LabelledCells, colors: dict[int, str] | None = None) -> pd.DataFrame:
    """The id → name legend of a labelled export, with each population's cell count (and colour when known)."""
    ids = sorted(cells.names) + [UNASSIGNED_ID] + ([UNKNOWN_ID] if cells.novelty is not None else [])
    counts = dict(zip(*np.unique(np.asarray(cells.population_id), return_counts=True)))
    frame = pd.DataFrame({"population_id": ids, "population": names_of(np.array(ids), cells.names),
                          "cells": [int(counts.get(i, 0)) for i in ids]})
    if colors:
        frame["color"] = [colors.get(i, "") for i in ids]
    return frame


SPLIT_BY = ("population", "sample")


def write_split_fcs(path: Path, dataset: Dataset, cells: LabelledCells, by: str,
                    colors: dict[int, str] | None = None) -> list[str]:
    """Write a zip of one labelled FCS per population or per sample, plus legend.csv; return the names inside.

    Each part holds its cells' rows of the full export (event_id keeps their row in the original file).
    """
    if by not in SPLIT_BY:
        raise ValueError(f"split by {by!r}: must be one of {SPLIT_BY}")
    if by == "population":
        keys = np.asarray(cells.population_id)
        order = [*sorted(cells.names), *NOT_CALLED]
        groups = {pid: str(names_of(np.array([pid]), cells.names)[0]) for pid in order if (keys == pid).any()}
    else:
        keys = np.asarray(dataset.sample_ids)
        groups = {i: name for i, name in enumerate(dataset.samples) if (keys == i).any()}
    stems = make_unique([_safe_stem(name) for name in groups.values()])
    ids = event_ids(dataset.sample_ids)
    written = []
    with tempfile.TemporaryDirectory() as tmp, atomic_file(Path(path)) as handle, \
            zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for key, stem in zip(groups, stems):
            rows = np.flatnonzero(keys == key)
            part = _subset(dataset, rows)
            part_cells = LabelledCells(np.asarray(cells.population_id)[rows], cells.names,
                                       None if cells.confidence is None else np.asarray(cells.confidence)[rows],
                                       coords=None if cells.coords is None else np.asarray(cells.coords)[rows],
                                       novelty=None if cells.novelty is None else np.asarray(cells.novelty)[rows])
            file = Path(tmp) / f"{stem}.fcs"
            write_labelled_fcs(file, part, part_cells, ids[rows])
            archive.write(file, file.name)
            file.unlink()
            written.append(file.name)
        archive.writestr("legend.csv", legend_frame(cells, colors).to_csv(index=False))
        written.append("legend.csv")
    return written


def _subset(dataset: Dataset, rows: np.ndarray) -> Dataset:
    """The cells `rows` of a dataset as a dataset of their own (events copied: one part at a time)."""
    return replace(dataset, events=np.ascontiguousarray(dataset.events[rows]),
                   sample_ids=np.asarray(dataset.sample_ids)[rows],
                   annotations=dataset.annotations.iloc[rows].reset_index(drop=True)
                   if len(dataset.annotations.columns) else pd.DataFrame())


def _safe_stem(name: str) -> str:
    """A file name from a population or sample name: letters, digits, '-', '_' and '.' kept, the rest '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem if str(name).lower().endswith(".fcs") else str(name))
    return stem.strip("._") or "part"


def write_labelled_h5ad(path: Path, dataset: Dataset, spec: TransformSpec, cells: LabelledCells | None, *,
                        x: np.ndarray | None = None, user_labels: np.ndarray | None = None,
                        colors: dict[int, str] | None = None, maps: dict[str, np.ndarray] | None = None,
                        provenance: dict | None = None) -> Path:
    """Write the dataset, its transformed features (computed from `spec` unless given) and its result as .h5ad.

    `maps` are keyed like scanpy's obsm ('X_umap'); `provenance` (model, bundle_hash, seed, threshold, ...) goes to
    uns['cytoauto'].
    """
    from .h5ad import H5adContent, write_h5ad

    features = transform_features(dataset, spec) if x is None else x
    content = H5adContent(
        population_id=None if cells is None else cells.population_id,
        confidence=None if cells is None else cells.confidence,
        names=dict(cells.names) if cells is not None else {}, colors=dict(colors or {}), user_labels=user_labels,
        novelty=None if cells is None else cells.novelty, maps=dict(maps or {}), provenance=dict(provenance or {}),
    )
    return write_h5ad(path, dataset, features, spec, content)


def abundance(population_id: np.ndarray, names: dict[int, str], sample_ids: np.ndarray,
              samples: list[str]) -> pd.DataFrame:
    """Cells per population and sample (counts and percent of the sample), unassigned included."""
    frame = pd.DataFrame({"sample": np.asarray(samples, dtype=object)[np.asarray(sample_ids)],
                          "population": names_of(population_id, names)})
    counts = frame.groupby(["sample", "population"]).size().rename("cells").reset_index()
    counts["percent"] = 100 * counts["cells"] / counts.groupby("sample")["cells"].transform("sum")
    return counts
