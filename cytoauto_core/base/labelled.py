"""The labelled-cells record every layer passes around: per-cell population ids, their names, and how names match."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .dataset import UNASSIGNED, UNKNOWN, UNKNOWN_ID

MIN_LABELS_FOR_TRAINING = 5  # clicked cells a population needs before a model learns it
_NAME_NOISE = re.compile(r"[\s_]+")


@dataclass
class LabelledCells:
    """Per-cell results to export: population ids (-1 = unassigned, -2 = unknown), names by id, confidence, novelty
    (share of known cells more typical of their population, see models.novelty) and optional extras."""

    population_id: np.ndarray
    names: dict[int, str]
    confidence: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    coords: np.ndarray | None = None
    novelty: np.ndarray | None = None

    def population_names(self) -> np.ndarray:
        return names_of(self.population_id, self.names)


def names_of(population_id: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """Per-cell population names for ids (-2 → 'unknown'; -1 and ids without a name → 'unassigned')."""
    ids = np.asarray(population_id)
    size = max(max(names, default=-1), int(ids.max(initial=-1))) + 1
    lookup = np.array([names.get(i, UNASSIGNED) for i in range(size)] + [UNASSIGNED, UNKNOWN], dtype=object)
    return lookup[np.where(ids == UNKNOWN_ID, size + 1, np.where(ids < 0, size, ids))]


def name_key(name: object) -> str:
    """How population names are matched: case, spaces and underscores ignored ('CD4 T cells' == 'CD4_T_cells')."""
    return _NAME_NOISE.sub("", str(name)).casefold()
