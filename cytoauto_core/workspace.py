"""The on-disk workspace: datasets keyed by content hash, with their settings, labels, embeddings and models.

Layout: ROOT/datasets/<hash>/{events.npy, sample_ids.npy, annotations.parquet, dataset.json,
settings.json, labels/, arrays/}, ROOT/models/<bundle>/, ROOT/uploads/ (transient).
Events are memory-mapped on load, so opening a million-cell dataset copies nothing.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import Channel, Dataset, Spillover
from .storage import atomic_file, atomic_save_npy, atomic_write_json, read_json

ENV_VAR = "CYTOAUTO_WORKSPACE"
_KEY = re.compile(r"^[0-9a-f]{8,64}$")
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


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
        if (folder / "dataset.json").exists():
            return key
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(folder / "events.npy", dataset.events)
        atomic_save_npy(folder / "sample_ids.npy", np.asarray(dataset.sample_ids, dtype=np.int32))
        annotations = dataset.annotations.copy()
        annotations.columns = [str(c) for c in annotations.columns]
        with atomic_file(folder / "annotations.parquet") as handle:
            annotations.to_parquet(handle, index=False)
        spill = dataset.spillover
        atomic_write_json(folder / "dataset.json", {
            "name": dataset.name,
            "n_cells": dataset.n_cells,
            "channels": [asdict(c) for c in dataset.channels],
            "samples": dataset.samples,
            "spillover": None if spill is None else {"channels": spill.channels, "matrix": spill.matrix.tolist()},
            "metadata": dataset.metadata,
            "warnings": dataset.warnings,
            "created": time.time(),
        })
        return key

    def has_dataset(self, key: str) -> bool:
        return (self.dataset_dir(key) / "dataset.json").exists()

    def load_dataset(self, key: str) -> Dataset:
        """Open a stored dataset; events are memory-mapped read-only."""
        folder = self.dataset_dir(key)
        info = read_json(folder / "dataset.json")
        if info is None:
            raise KeyError(key)
        spill = info["spillover"]
        return Dataset(
            events=np.load(folder / "events.npy", mmap_mode="r"),
            channels=[Channel(**c) for c in info["channels"]],
            samples=info["samples"],
            sample_ids=np.load(folder / "sample_ids.npy"),
            annotations=pd.read_parquet(folder / "annotations.parquet"),
            spillover=None if spill is None else Spillover(spill["channels"], np.asarray(spill["matrix"])),
            metadata=info["metadata"],
            warnings=info["warnings"],
            name=info["name"],
        )

    def list_datasets(self) -> list[DatasetRecord]:
        """Stored datasets, newest first."""
        records = []
        for folder in (self.root / "datasets").iterdir():
            info = read_json(folder / "dataset.json")
            if info is None:
                continue
            records.append(DatasetRecord(
                key=folder.name, name=info["name"], n_cells=info["n_cells"],
                n_channels=len(info["channels"]), samples=info["samples"], created=info["created"],
            ))
        return sorted(records, key=lambda r: r.created, reverse=True)

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
