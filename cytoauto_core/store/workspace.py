"""The on-disk workspace: datasets keyed by content hash, with their settings, labels, embeddings and models.

Layout: ROOT/datasets/<hash>/{events.npy, sample_ids.npy, annotations.parquet, dataset.json,
settings.json, labels/, arrays/}, ROOT/models/<bundle>/, ROOT/uploads/ and ROOT/ingest/ (transient).
Events are memory-mapped on load, so opening a million-cell dataset copies nothing.

add_dataset writes each file atomically and dataset.json last, so a folder with a dataset.json holds a complete
dataset; one a kill left without it is deleted when a workspace is next opened (see _remove_unfinished_datasets).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.dataset import Channel, Dataset, Spillover
from ..base.errors import CytoInputError
from ..base.storage import (atomic_file, atomic_save_npy, atomic_write_json, directory_lock, is_temp_file, read_json,
                            remove_stale_temp_files)
from ..io.marker_table import MarkerTable

log = logging.getLogger(__name__)
ENV_VAR = "CYTOAUTO_WORKSPACE"
STALE_S = 3600.0  # temp files and uploads untouched this long belong to a write or upload that was killed
_KEY = re.compile(r"^[0-9a-f]{8,64}$")
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
MARKER_TABLE = "marker_table.json"  # the table the Train page trains with beside the clicked labels
_WRITTEN_FIRST = {"events.npy", "sample_ids.npy", "annotations.parquet"}  # what add_dataset writes before dataset.json


@dataclass
class DatasetRecord:
    """What the app lists about a stored dataset."""

    key: str
    name: str
    n_cells: int
    n_channels: int
    samples: list[str]
    created: float


def default_root() -> Path:
    """The workspace folder: $CYTOAUTO_WORKSPACE, else ./workspace."""
    return Path(os.environ.get(ENV_VAR, "workspace")).resolve()


class Workspace:
    """A folder holding everything the user loaded and made, safe across refreshes and restarts."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        (self.root / "datasets").mkdir(parents=True, exist_ok=True)
        (self.root / "models").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        self._skipped: set[str] = set()
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Delete what killed writes and uploads left behind (an hour old or more, so none is still in use)."""
        removed = remove_stale_temp_files(self.root, STALE_S)
        cutoff = time.time() - STALE_S
        for path in (self.root / "uploads").iterdir():
            try:
                if path.is_file() and path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
        if removed:
            log.warning("Removed %d file(s) left by interrupted writes or uploads under %s.", len(removed), self.root)
        folders = self._remove_unfinished_datasets() + _remove_stale_folders(self.root / "ingest", cutoff)
        if folders:
            log.warning("Removed %d dataset folder(s) that interrupted loads left without dataset.json under %s.",
                        len(folders), self.root)

    def _remove_unfinished_datasets(self) -> list[Path]:
        """Delete dataset folders a kill left between add_dataset's first file and its dataset.json, untouched for
        STALE_S. Only while no add_dataset is writing (they share a lock on datasets/ that this takes alone, so a
        busy workspace is cleaned at its next opening), and only folders that hold nothing but those first files:
        labels or settings beside them are kept."""
        datasets = self.root / "datasets"
        with directory_lock(datasets, exclusive=True, wait=False) as alone:
            if not alone:
                return []
            cutoff = time.time() - STALE_S
            removed = []
            for folder in datasets.iterdir():
                if self.is_key(folder.name) and _unfinished(folder) and _last_change(folder) < cutoff:
                    try:
                        shutil.rmtree(folder)
                    except OSError as exc:
                        log.warning("Could not remove the unfinished dataset folder %s (%s).", folder, exc)
                        continue
                    removed.append(folder)
            return removed

    @staticmethod
    def is_key(key: object) -> bool:
        """Whether `key` has the form of a dataset key (a hex hash); anything from a URL is checked with this first."""
        return isinstance(key, str) and bool(_KEY.match(key))

    def dataset_dir(self, key: str) -> Path:
        """The folder of dataset `key`; the key must be a hex hash, never a user-supplied name."""
        if not _KEY.match(key):
            raise ValueError(f"invalid dataset key {key!r}")
        return self.root / "datasets" / key

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def new_upload_path(self, suffix: str = "") -> Path:
        """A fresh path for streaming an upload to disk; the user's file name never becomes a path."""
        safe_suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix or "") else ""
        return self.root / "uploads" / f"{uuid.uuid4().hex}{safe_suffix}"

    def add_dataset(self, dataset: Dataset) -> str:
        """Store `dataset` under its content hash (a no-op when already stored) and return the key."""
        key = dataset.content_hash()
        folder = self.dataset_dir(key)
        if self._record(folder) is not None:
            return key
        with directory_lock(self.root / "datasets", exclusive=False):  # no clean-up removes the folder meanwhile
            folder.mkdir(parents=True, exist_ok=True)
            atomic_save_npy(folder / "events.npy", dataset.events)
            atomic_save_npy(folder / "sample_ids.npy", np.asarray(dataset.sample_ids, dtype=np.int32))
            annotations = dataset.annotations.copy()
            annotations.columns = [str(c) for c in annotations.columns]
            with atomic_file(folder / "annotations.parquet") as handle:
                annotations.to_parquet(handle, index=False)
            _describe(folder, dataset.channels, dataset.samples, dataset.spillover, dataset.metadata, dataset.warnings,
                      dataset.name, dataset.n_cells)
        return key

    def adopt_folder(self, folder: Path, channels: list[Channel], samples: list[str], spillover: Spillover | None,
                     metadata: dict[str, str], warnings: list[str], name: str) -> str:
        """Store a dataset whose events.npy, sample_ids.npy and annotations.parquet were written in `folder` (a
        folder on this workspace's disk, see ingest): describe it, hash it and move it under its key."""
        n_cells = int(np.load(folder / "sample_ids.npy", mmap_mode="r").shape[0])
        _describe(folder, channels, samples, spillover, metadata, warnings, name, n_cells)
        key = _load_folder(folder).content_hash()
        target = self.dataset_dir(key)
        with directory_lock(self.root / "datasets", exclusive=False):
            if self._record(target) is None:
                shutil.rmtree(target, ignore_errors=True)
                os.replace(folder, target)
        return key

    def has_dataset(self, key: object) -> bool:
        """Whether `key` (possibly from a URL) names a stored dataset whose description can be read."""
        return self.is_key(key) and self._record(self.dataset_dir(key)) is not None

    def load_dataset(self, key: str) -> Dataset:
        """Open a stored dataset; events are memory-mapped read-only. KeyError when absent, CytoInputError when damaged."""
        folder = self.dataset_dir(key)
        if not (folder / "dataset.json").exists():
            raise KeyError(key)
        try:
            return _load_folder(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CytoInputError(f"The stored dataset {key[:12]}… is damaged and cannot be opened.") from exc

    def list_datasets(self) -> list[DatasetRecord]:
        """Stored datasets, newest first; an entry that cannot be read is skipped (with a warning in the log)."""
        records = []
        for folder in (self.root / "datasets").iterdir():
            if not self.is_key(folder.name) or not folder.is_dir():
                self._skip(folder, "it is not a dataset folder")
                continue
            record = self._record(folder)
            if record is not None:
                records.append(record)
        return sorted(records, key=lambda r: r.created, reverse=True)

    def _record(self, folder: Path) -> DatasetRecord | None:
        """What dataset.json says about the dataset in `folder`, or None when it is absent or cannot be read."""
        try:
            info = read_json(folder / "dataset.json")
            if info is None:
                return None
            record = DatasetRecord(
                key=folder.name, name=str(info["name"]), n_cells=int(info["n_cells"]),
                n_channels=len(info["channels"]), samples=[str(s) for s in info["samples"]],
                created=float(info["created"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._skip(folder, f"its dataset.json cannot be read ({type(exc).__name__})")
            return None
        return record

    def _skip(self, path: Path, why: str) -> None:
        """Log once per workspace that an entry under datasets/ is left out."""
        if path.name not in self._skipped:
            self._skipped.add(path.name)
            log.warning("Skipping %s in the workspace: %s.", path, why)

    def save_settings(self, key: str, settings: dict) -> None:
        atomic_write_json(self.dataset_dir(key) / "settings.json", settings)

    def load_settings(self, key: str) -> dict | None:
        return read_json(self.dataset_dir(key) / "settings.json")

    def save_array(self, key: str, name: str, array: np.ndarray, meta: dict | None = None) -> None:
        """Store a derived array (embedding, prediction) of dataset `key` with optional JSON metadata."""
        folder = self._arrays(key, name)
        atomic_save_npy(folder / f"{name}.npy", array)
        atomic_write_json(folder / f"{name}.json", meta or {})

    def load_array(self, key: str, name: str) -> tuple[np.ndarray, dict] | None:
        """A stored derived array and its metadata, or None when absent."""
        folder = self._arrays(key, name)
        meta = read_json(folder / f"{name}.json")
        if meta is None or not (folder / f"{name}.npy").exists():
            return None
        return np.load(folder / f"{name}.npy", mmap_mode="r"), meta

    def list_arrays(self, key: str, prefix: str = "") -> list[str]:
        """Names of stored derived arrays of dataset `key` starting with `prefix`."""
        folder = self.dataset_dir(key) / "arrays"
        if not folder.exists():
            return []
        return sorted(p.stem for p in folder.glob(f"{prefix}*.json"))

    def _arrays(self, key: str, name: str) -> Path:
        if not _ARRAY_NAME.match(name):
            raise ValueError(f"invalid array name {name!r}")
        return self.dataset_dir(key) / "arrays"

    def labels_dir(self, key: str) -> Path:
        return self.dataset_dir(key) / "labels"

    def save_marker_table(self, key: str, table: MarkerTable | None) -> None:
        """Make `table` dataset `key`'s marker table (the Train page then trains with it); None removes it."""
        path = self.dataset_dir(key) / MARKER_TABLE
        if table is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_json(path, table.to_dict())

    def load_marker_table(self, key: str) -> MarkerTable | None:
        """Dataset `key`'s marker table, None when it has none; CytoInputError (one sentence) when it is damaged."""
        try:
            stored = read_json(self.dataset_dir(key) / MARKER_TABLE)
        except (OSError, ValueError):
            stored = ""  # unreadable JSON: from_dict refuses it as it refuses a damaged table
        return None if stored is None else MarkerTable.from_dict(stored)


def _remove_stale_folders(parent: Path, cutoff: float) -> list[Path]:
    """Delete the folders in `parent` (imports a kill interrupted) unchanged since `cutoff`."""
    removed = []
    for folder in parent.iterdir() if parent.is_dir() else []:
        if folder.is_dir() and not folder.is_symlink() and _last_change(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _describe(folder: Path, channels: list[Channel], samples: list[str], spill: Spillover | None,
              metadata: dict[str, str], warnings: list[str], name: str, n_cells: int) -> None:
    """Write dataset.json, last: its presence means every file of the dataset is complete."""
    atomic_write_json(folder / "dataset.json", {
        "name": name,
        "n_cells": n_cells,
        "channels": [asdict(c) for c in channels],
        "samples": samples,
        "spillover": None if spill is None else {"channels": spill.channels, "matrix": spill.matrix.tolist()},
        "metadata": metadata,
        "warnings": warnings,
        "created": time.time(),
    })


def _load_folder(folder: Path) -> Dataset:
    """The dataset stored in `folder`, events memory-mapped read-only (OSError, ValueError, KeyError, TypeError when
    damaged)."""
    info = read_json(folder / "dataset.json")
    if info is None:
        raise KeyError(str(folder))
    spill = info["spillover"]
    return Dataset(
        events=np.load(folder / "events.npy", mmap_mode="r"),
        channels=[Channel(**c) for c in info["channels"]],
        samples=info["samples"],
        sample_ids=np.load(folder / "sample_ids.npy", mmap_mode="r"),
        annotations=pd.read_parquet(folder / "annotations.parquet"),
        spillover=None if spill is None else Spillover(spill["channels"], np.asarray(spill["matrix"])),
        metadata=info["metadata"],
        warnings=info["warnings"],
        name=info["name"],
    )


def _unfinished(folder: Path) -> bool:
    """Whether `folder` is a dataset folder without dataset.json holding only files add_dataset writes before it."""
    try:
        entries = list(folder.iterdir())
    except (NotADirectoryError, FileNotFoundError):
        return False
    return not (folder / "dataset.json").exists() and all(
        (e.name in _WRITTEN_FIRST or is_temp_file(e)) and e.is_file() and not e.is_symlink() for e in entries)


def _last_change(folder: Path) -> float:
    """The newest modification time of `folder` and the files in it (a write in progress keeps it recent)."""
    times = [folder.lstat().st_mtime]
    for entry in folder.iterdir():
        try:
            times.append(entry.lstat().st_mtime)
        except FileNotFoundError:
            continue
    return max(times)
