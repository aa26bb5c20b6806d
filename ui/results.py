"""The stored result of the last training on a dataset: per-cell probabilities plus what made them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from cytoauto_core.dataset import Dataset
from cytoauto_core.export import LabelledCells
from cytoauto_core.models.bundle import ModelBundle, Prediction, load_bundle, predict_dataset
from cytoauto_core.storage import read_json
from ui import state

SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"

RESULT = "result-proba"


@dataclass
class StoredResult:
    """Probabilities (n_cells × n_classes, memory-mapped) and metadata of the applied model."""

    proba: np.ndarray
    meta: dict

    @property
    def class_ids(self) -> np.ndarray:
        return np.asarray(self.meta["class_ids"])

    @property
    def names(self) -> dict[int, str]:
        return {int(i): n for i, n in zip(self.meta["class_ids"], self.meta["class_names"])}

    def cells(self, threshold: float, coords: np.ndarray | None = None) -> LabelledCells:
        """Per-cell labels: the most probable population, or unassigned (-1) below `threshold`."""
        confidence = self.proba.max(axis=1)
        labels = self.class_ids[self.proba.argmax(axis=1)].astype(np.int32)
        labels[confidence < threshold] = -1
        return LabelledCells(labels, self.names, confidence.astype(np.float32), np.asarray(self.proba), coords)


def load_result(key: str) -> StoredResult | None:
    found = state.workspace().load_array(key, RESULT)
    return None if found is None else StoredResult(*found)


def save_result(key: str, prediction: Prediction, *, model: str, bundle_hash: str, bundle_dir: str,
                threshold: float, seed: int, n_labelled: int, metrics: dict, seconds: float, **extra) -> None:
    """Store a model's per-cell probabilities as the dataset's result, with what made them."""
    state.workspace().save_array(key, RESULT, prediction.probabilities.astype(np.float32, copy=False), {
        "model": model, "bundle_hash": bundle_hash, "bundle_dir": bundle_dir, "class_ids": prediction.class_ids,
        "class_names": prediction.class_names, "threshold": threshold, "seed": seed, "n_labelled": n_labelled,
        "metrics": metrics, "seconds": seconds, "trained_at": time.time(), **extra,
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
                threshold=0.5, seed=meta["seed"], n_labelled=0, metrics=meta.get("metrics", {}), seconds=0.0,
                applied_from=meta["name"])
