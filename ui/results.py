"""The stored result of the last training on a dataset: per-cell probabilities plus what made them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from cytoauto_core.dataset import Dataset
from cytoauto_core.export import LabelledCells
from cytoauto_core.models.bundle import ModelBundle, Prediction, call_cells, load_bundle, predict_dataset
from cytoauto_core.models.novelty import is_unknown
from cytoauto_core.storage import read_json
from ui import state

SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"

RESULT = "result-proba"


@dataclass
class StoredResult:
    """Probabilities (n_cells × n_classes, memory-mapped), each cell's novelty when the model has unknown detection
    (stored as one more column, so both are written in one file), and metadata of the applied model."""

    stored: np.ndarray
    meta: dict

    @property
    def class_ids(self) -> np.ndarray:
        return np.asarray(self.meta["class_ids"])

    @property
    def proba(self) -> np.ndarray:
        return self.stored[:, : len(self.class_ids)]

    @property
    def novelty(self) -> np.ndarray | None:
        return self.stored[:, -1] if self.stored.shape[1] > len(self.class_ids) else None

    @property
    def rejection(self) -> float:
        """The share of known cells the model was applied with calling unknown (0 without unknown detection)."""
        return float(self.meta.get("rejection", 0.0)) if self.novelty is not None else 0.0

    @property
    def names(self) -> dict[int, str]:
        return {int(i): n for i, n in zip(self.meta["class_ids"], self.meta["class_names"])}

    def cells(self, threshold: float, coords: np.ndarray | None = None,
              rejection: float | None = None) -> LabelledCells:
        """Per-cell labels: the most probable population, unassigned (-1) below `threshold`, unknown (-2) where the
        novelty is above 1 − `rejection` (the applied level when None)."""
        proba, novelty = np.asarray(self.proba), self.novelty
        level = self.rejection if rejection is None else rejection
        unknown = None if novelty is None else is_unknown(novelty, level)
        labels, confidence = call_cells(proba, self.class_ids, threshold, unknown)
        return LabelledCells(labels.astype(np.int32), self.names, confidence, proba, coords,
                             None if novelty is None else np.asarray(novelty, np.float32))


def rejection_text(level: float) -> str:
    """How the app names an unknown-detection level."""
    return "off" if level <= 0 else f"{100 * level:g} % of known cells"


def load_result(key: str) -> StoredResult | None:
    found = state.workspace().load_array(key, RESULT)
    return None if found is None else StoredResult(*found)


def save_result(key: str, prediction: Prediction, *, model: str, bundle_hash: str, bundle_dir: str,
                threshold: float, rejection: float, seed: int, n_labelled: int, metrics: dict, seconds: float,
                **extra) -> None:
    """Store a model's per-cell probabilities (and novelty, as a last column) as the dataset's result, with what
    made them."""
    stored = prediction.probabilities.astype(np.float32, copy=False)
    if prediction.novelty is not None:
        stored = np.column_stack([stored, prediction.novelty.astype(np.float32, copy=False)])
    state.workspace().save_array(key, RESULT, stored, {
        "model": model, "bundle_hash": bundle_hash, "bundle_dir": bundle_dir, "class_ids": prediction.class_ids,
        "class_names": prediction.class_names, "threshold": threshold, "rejection": rejection, "seed": seed,
        "n_labelled": n_labelled, "metrics": metrics, "seconds": seconds, "trained_at": time.time(), **extra,
    })


def saved_bundles() -> dict[str, Path]:
    """Model bundles in the workspace and shipped in models/: display name → folder."""
    found = {}
    for root in (state.workspace().models_dir, SHIPPED_MODELS):
        for meta_path in sorted(root.glob("*/bundle.json")):
            meta = read_json(meta_path)
            found[f"{meta['name']} ({meta['kind']}, {meta_path.parent.name})"] = meta_path.parent
    return found


@st.cache_resource(max_entries=8, show_spinner="Loading the model bundle…")
def _bundle(folder: str, bundle_hash: str) -> ModelBundle:
    """A verified bundle, loaded once per content hash and shared read-only (predict only, never fit)."""
    return load_bundle(folder)


def apply_bundle(key: str, dataset: Dataset, folder: Path) -> None:
    """Apply a saved bundle to every cell of a dataset and store it as the dataset's result."""
    meta = read_json(folder / "bundle.json")
    bundle = _bundle(str(folder), meta["bundle_hash"])
    prediction = predict_dataset(bundle, dataset.events, dataset.channel_names, dataset.spillover)
    save_result(key, prediction, model=meta["kind"], bundle_hash=meta["bundle_hash"], bundle_dir=folder.name,
                threshold=0.5, rejection=0.0 if bundle.novelty is None else bundle.novelty.rejection,
                seed=meta["seed"], n_labelled=0, metrics=meta.get("metrics", {}), seconds=0.0,
                applied_from=meta["name"])
