"""Import a study from files on the server into the workspace, one file in memory at a time.

The files' channels are matched as a multi-file upload matches them (the channels every readable file has, in the
first file's order; FCS layouts come from their TEXT segments, so no file is read twice). Events, sample ids and
annotations are appended file by file to the dataset's own files, so memory holds one file whatever the study's size,
and the browser never carries the bytes. Paths are only taken under a data root the server was started with
($CYTOAUTO_DATA), never outside it.
"""
from __future__ import annotations

import glob
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..base.chunks import RowAppender
from ..base.contracts import JobCancelled, Progress, ShouldStop
from ..base.dataset import Dataset, make_unique
from ..base.errors import CytoInputError, quoted
from ..io import read_file
from ..io.fcs_reader import read_fcs_layout
from ..store.workspace import Workspace
from .samples import descriptive, save_keywords

DATA_ENV_VAR = "CYTOAUTO_DATA"
READABLE_SUFFIXES = (".fcs", ".lmd", ".csv", ".tsv", ".txt", ".h5ad")


@dataclass
class IngestedFile:
    """One input's outcome: 'ok' with its cells, or 'skipped' with one sentence saying why."""

    path: str
    status: str
    cells: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    """The stored dataset's key (None when no file could be used), each file's outcome and the seconds taken."""

    key: str | None
    files: list[IngestedFile]
    n_cells: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[IngestedFile]:
        return [f for f in self.files if f.status != "ok"]


@dataclass
class _Layout:
    """What a file will contribute, known before its events are read."""

    path: Path
    channels: list[str]
    annotations: list[str]


def data_root() -> Path | None:
    """The folder the server may import from ($CYTOAUTO_DATA), or None when it was started without one."""
    value = os.environ.get(DATA_ENV_VAR, "").strip()
    return Path(value).resolve() if value else None


def list_files(root: Path, pattern: str = "**/*") -> list[Path]:
    """Readable cytometry files under `root` matching the glob `pattern` (relative to root), sorted; a pattern that
    leaves the root is refused (CytoInputError), a match that resolves outside it (a link out) is left out."""
    root = Path(root).resolve()
    if os.path.isabs(pattern) or ".." in Path(pattern).parts:
        raise CytoInputError(f"{quoted(pattern)} is outside the data folder {root}; only files under it can be "
                             "imported.")
    found = []
    for match in sorted(glob.glob(pattern, root_dir=root, recursive=True)):
        path = (root / match).resolve()
        if path.is_relative_to(root) and path.is_file() and path.suffix.lower() in READABLE_SUFFIXES:
            found.append(path)
    return list(dict.fromkeys(found))


def resolve_inputs(inputs: Sequence[str | Path], root: Path | None) -> list[Path]:
    """Files named by paths or globs (relative ones under `root`, matched there), sorted, repeats dropped; with a
    root, every file must resolve (links followed) inside it, else CytoInputError names it."""
    found: dict[Path, None] = {}
    for item in inputs:
        text = str(item)
        if root is not None and not os.path.isabs(text):
            matches = [str(root / m) for m in sorted(glob.glob(text, root_dir=root, recursive=True))] \
                if glob.has_magic(text) else [str(root / text)]
        else:
            matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        for match in matches:
            path = Path(match).resolve()
            if root is not None and not path.is_relative_to(root):
                shown = quoted(str(item) if match == text or not glob.has_magic(text) else os.path.relpath(match, root))
                raise CytoInputError(f"{shown} is outside the data folder {root}; only files under it can be "
                                     "imported.")
            if not path.is_dir():
                found.setdefault(path, None)
    return list(found)


def ingest(inputs: Sequence[str | Path], workspace: Workspace, name: str | None = None, root: Path | None = None,
           progress: Progress | None = None, should_stop: ShouldStop | None = None) -> IngestReport:
    """Store the files as one dataset (one sample per file or data set) and return the report.

    A file that cannot be read, or lacks channels the others share, is skipped with its reason; the rest go in.
    Raises CytoInputError when no input names a file, or when no file can be used.
    """
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    paths = resolve_inputs(inputs, root)
    if not paths:
        raise CytoInputError(f"No file matches {' '.join(map(str, inputs)) or '(nothing given)'}.")
    outcomes: dict[Path, IngestedFile] = {}
    layouts = []
    for k, path in enumerate(paths):
        report(0.05 * k / len(paths), f"reading the layout of {path.name}")
        try:
            layouts.append(_layout_of(path))
        except CytoInputError as exc:
            outcomes[path] = IngestedFile(str(path), "skipped", reason=str(exc))
    if not layouts:
        raise CytoInputError("None of the files can be read: " + " ".join(f.reason for f in outcomes.values()))
    first = set(layouts[0].channels)
    for layout in layouts[1:]:
        if not first & set(layout.channels):
            outcomes[layout.path] = IngestedFile(str(layout.path), "skipped", reason=(
                f"'{layout.path.name}' shares no channel name with '{layouts[0].path.name}', the first file."))
    layouts = [layout for layout in layouts if layout.path not in outcomes]
    keep, warnings = _shared_channels(layouts)
    columns = list(dict.fromkeys(c for layout in layouts for c in layout.annotations))
    folder = workspace.root / "ingest" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        writer = _StudyWriter(folder, keep, columns)
        for k, layout in enumerate(layouts):
            if stop():
                raise JobCancelled()
            report(0.05 + 0.85 * k / len(layouts), f"importing {layout.path.name} ({k + 1} of {len(layouts)})")
            outcomes[layout.path] = writer.add(layout.path)
        if writer.rows == 0:
            raise CytoInputError("None of the files could be imported: "
                                 + " ".join(f.reason for f in outcomes.values() if f.reason))
        report(0.9, f"checking {writer.rows:,} cells")
        key = writer.finish(workspace, name or (writer.first_name if len(writer.samples) == 1
                                                else f"{len(writer.samples)} files"), warnings)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(1.0, f"imported {writer.rows:,} cells from {len(writer.samples)} samples")
    files = [outcomes[p] for p in paths]
    return IngestReport(key, files, writer.rows, time.perf_counter() - started, warnings)


def _layout_of(path: Path) -> _Layout:
    """A file's channels and annotation columns: from the TEXT segment for FCS, else from reading it."""
    with open(path, "rb") as fh:
        is_fcs = fh.read(3) == b"FCS"
    if is_fcs:
        channels, columns = read_fcs_layout(path)
        return _Layout(path, channels, columns)
    ds = read_file(path)
    return _Layout(path, ds.channel_names, [str(c) for c in ds.annotations.columns])


def _shared_channels(layouts: list[_Layout]) -> tuple[list[str], list[str]]:
    """The channels every file has, in the first file's order, and the warning naming those dropped."""
    sets = [set(layout.channels) for layout in layouts]
    common = set.intersection(*sets)
    keep = [c for c in layouts[0].channels if c in common]
    if not keep:
        raise CytoInputError(f"The {len(layouts)} files share no channel name that all of them have, so they cannot "
                             "be combined.")
    dropped = sorted(set.union(*sets) - common)
    if not dropped:
        return keep, []
    shown = ", ".join(map(quoted, dropped[:8])) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
    return keep, [f"Only the {len(keep)} channels that all {len(layouts)} files have were kept; {shown} were dropped."]


class _StudyWriter:
    """Appends files' events, sample ids and annotations to a dataset folder being built."""

    def __init__(self, folder: Path, channels: list[str], columns: list[str]) -> None:
        self.folder, self.channel_names, self.columns = folder, channels, columns
        self.events = RowAppender(folder / "events.npy", (len(channels),), np.float32)
        self.sample_ids = RowAppender(folder / "sample_ids.npy", (), np.int32)
        self.annotations = None if not columns else pq.ParquetWriter(
            folder / "annotations.parquet", pa.schema([(c, pa.dictionary(pa.int32(), pa.string())) for c in columns]))
        self.samples: list[str] = []
        self.keywords: list[dict[str, str]] = []
        self.rows = 0
        self.first: Dataset | None = None
        self.first_name = ""
        self.warnings: list[str] = []
        self.spillover = None

    def add(self, path: Path) -> IngestedFile:
        """Append one file; a file that cannot be read or lacks a shared channel is skipped with its reason."""
        try:
            part = read_file(path)
            missing = [c for c in self.channel_names if c not in set(part.channel_names)]
            if missing:
                raise CytoInputError(f"'{path.name}' lacks channel {quoted(missing[0])}, which the other files share.")
        except CytoInputError as exc:
            return IngestedFile(str(path), "skipped", reason=str(exc))
        self.events.append(np.take(part.events, part.channel_index(self.channel_names), axis=1))
        self.sample_ids.append(part.sample_ids + np.int32(len(self.samples)))
        if self.annotations is not None:
            self.annotations.write_table(self._annotation_table(part))
        if self.first is None:
            self.first, self.first_name = part, part.name
        if self.spillover is None and part.spillover and set(part.spillover.channels) <= set(self.channel_names):
            self.spillover = part.spillover
        self.samples += part.samples
        self.keywords += [descriptive(part.metadata)] * len(part.samples)
        self.warnings += part.warnings
        self.rows += part.n_cells
        return IngestedFile(str(path), "ok", part.n_cells)

    def _annotation_table(self, part: Dataset) -> pa.Table:
        """The file's annotation columns as text categories; a column the file lacks is empty text."""
        arrays = []
        for column in self.columns:
            values = part.annotations[column] if column in part.annotations.columns else pd.Series([""] * part.n_cells)
            text = pd.Categorical(values.astype(str).to_numpy())
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(text.codes, pa.int32()),
                                                         pa.array(list(text.categories), pa.string())))
        return pa.table(arrays, names=self.columns)

    def finish(self, workspace: Workspace, name: str, warnings: list[str]) -> str:
        """Close the files, describe the dataset and move it into the workspace under its content hash."""
        self.events.close()
        self.sample_ids.close()
        if self.annotations is None:
            pd.DataFrame().to_parquet(self.folder / "annotations.parquet", index=False)
        else:
            self.annotations.close()
        samples = make_unique(self.samples)
        first = self.first
        assert first is not None
        channels = [first.channels[i] for i in first.channel_index(self.channel_names)]
        key = workspace.adopt_folder(self.folder, channels, samples, self.spillover, first.metadata,
                                     warnings + self.warnings, name)
        save_keywords(workspace, key, dict(zip(samples, self.keywords)))
        return key
