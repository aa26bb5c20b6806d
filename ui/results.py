"""The stored result of the last training on a dataset: per-cell probabilities plus what made them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytoauto_core.export import LabelledCells
from ui import state

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


def save_result(key: str, proba: np.ndarray, meta: dict) -> None:
    state.workspace().save_array(key, RESULT, proba.astype(np.float32, copy=False), meta)
