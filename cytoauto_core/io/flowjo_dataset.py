"""FlowJo gates applied to a dataset that is already loaded (the Label page's import).

Each sample is written back to a temporary FCS file under its own file name (events as read, with the dataset's
spillover), so FlowKit matches it to the workspace by name and gates exactly the cells the app holds. A sample name
only ever gives the last part of a path inside a fresh temporary folder per sample: no name can reach another path.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.dataset import Dataset
from .fcs_writer import write_fcs
from .flowjo import GateLabels, WorkspaceGates, workspace_gates, workspace_labels


def dataset_gates(wsp_path: Path, dataset: Dataset) -> WorkspaceGates:
    """The workspace's gates for the dataset's files; one sentence when it does not describe one of them."""
    with _sample_files(dataset) as paths:
        return workspace_gates(wsp_path, paths)


def dataset_gate_labels(wsp_path: Path, dataset: Dataset, gates: list[str] | None = None) -> GateLabels:
    """The chosen gates (default: the leaves) as per-cell population ids in the dataset's row order."""
    with _sample_files(dataset) as paths:
        gated = workspace_labels(wsp_path, paths, gates)
    labels = np.full(dataset.n_cells, -1, np.int16)
    start = 0
    for i, n in enumerate(gated.cells_per_file):
        labels[np.flatnonzero(dataset.sample_ids == i)] = gated.labels[start:start + n]
        start += n
    return replace(gated, labels=labels)


def gate_names(gated: GateLabels) -> np.ndarray:
    """Each cell's population name ('' for a cell in no chosen gate, or in two), for LabelStore.import_annotation."""
    lookup = np.array([gated.names[i] for i in range(len(gated.names))] + [""], dtype=object)
    return lookup[np.where(gated.labels < 0, len(gated.names), gated.labels)]


@contextmanager
def _sample_files(dataset: Dataset) -> Iterator[list[Path]]:
    """One temporary FCS file per sample, named as it was uploaded (its $FIL set to that name too)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, name in enumerate(dataset.samples):
            rows = np.flatnonzero(dataset.sample_ids == i)
            events = dataset.events if rows.size == dataset.n_cells else np.ascontiguousarray(dataset.events[rows])
            sample = replace(dataset, events=events, samples=[name], sample_ids=np.zeros(rows.size, np.int32),
                             annotations=pd.DataFrame())
            file_name = _file_name(name, i)
            path = Path(tmp) / str(i) / file_name
            path.parent.mkdir()
            paths.append(write_fcs(path, sample, metadata={"$FIL": file_name}))
        yield paths


def _file_name(sample: str, i: int) -> str:
    """The sample's file name without its folders; one no file can have ('', '..', a NUL byte, over 255 bytes)
    becomes 'sample <i + 1>.fcs', which matches no workspace sample and is refused in one sentence."""
    name = Path(sample).name
    usable = name not in ("", ".", "..") and "\x00" not in name and len(name.encode()) <= 255
    return name if usable else f"sample {i + 1}.fcs"
