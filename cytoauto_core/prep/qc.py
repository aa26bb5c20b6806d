"""Per-file quality control when a model is applied: mean confidence, unassigned and unknown shares, and marker drift
against the training data, so a file unlike the data the model learnt from is flagged rather than silently
given confident labels.

Drift of a marker: the mean absolute shift of its 2–98 % quantiles from the training data's, in units of the
training data's 2–98 % range (0 = same distribution; scaling a CyTOF marker by 1.5 gives about 0.08). A marker
is out of range above the largest of DRIFT_FLOOR, 2 × the largest drift of any of the training data's own
samples (a training set that pooled varied samples tolerates what it has already seen) and SAMPLING / √cells
(a small file's quantiles wander by chance: on demo files like the training data the worst of 32 markers
drifts by up to about 1.2 / √cells, bench/qc.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..base.chunks import gather_rows
from ..base.dataset import UNASSIGNED_ID, UNKNOWN_ID, Dataset
from ..base.labelled import LabelledCells
from .transforms import TransformSpec, transform_events

LEVELS = np.linspace(0.02, 0.98, 49)
DRIFT_FLOOR = 0.05
SAMPLING = 2.0
MAX_CELLS = 200_000  # quantiles from an evenly strided subset: exact enough, bounded time and memory
MIN_SAMPLE_CELLS = 1_000
PARAMS_KEY = "marker_reference"


@dataclass
class MarkerReference:
    """Quantiles (LEVELS × features, transformed scale) of the training data and each feature's drift limit."""

    features: list[str]
    quantiles: np.ndarray
    limits: np.ndarray

    def to_params(self) -> dict:
        """What a model bundle stores in its params to carry the reference."""
        return {PARAMS_KEY: {"features": self.features, "quantiles": self.quantiles.round(5).tolist(),
                             "limits": self.limits.round(5).tolist()}}

    @classmethod
    def from_params(cls, params: dict) -> MarkerReference | None:
        """The reference stored in a bundle's params, or None for a bundle saved without one."""
        stored = params.get(PARAMS_KEY)
        if stored is None:
            return None
        return cls(list(stored["features"]), np.asarray(stored["quantiles"], np.float64),
                   np.asarray(stored["limits"], np.float64))

    def drift(self, x: np.ndarray) -> np.ndarray:
        """Per-feature drift of cells `x` (n × features, transformed) from the training data."""
        spread = self.quantiles[-1] - self.quantiles[0]
        shift = np.abs(np.quantile(_strided(x), LEVELS, axis=0) - self.quantiles).mean(axis=0)
        return shift / np.where(spread > 0, spread, 1.0)


def reference_from(x: np.ndarray, features: list[str], sample_ids: np.ndarray | None = None) -> MarkerReference:
    """The reference of training cells `x` (transformed features); `sample_ids` widen the limits by the drift
    the training data's own samples show."""
    quantiles = np.quantile(_strided(x), LEVELS, axis=0)
    reference = MarkerReference(list(features), quantiles, np.full(len(features), DRIFT_FLOOR))
    if sample_ids is not None:
        ids, sizes = np.unique(sample_ids, return_counts=True)
        for sample in ids[sizes >= MIN_SAMPLE_CELLS] if len(ids) > 1 else []:
            own = reference.drift(x[_strided(np.flatnonzero(sample_ids == sample))])
            reference.limits = np.maximum(reference.limits, 2 * own)
    return reference


@dataclass
class FileQC:
    """What a user checks before trusting a file's labels."""

    mean_confidence: float
    unassigned_percent: float  # below the confidence threshold
    unknown_percent: float  # unlike every named population: a file with many may hold a population nobody named
    drift: float | None = None
    drift_marker: str | None = None
    drift_flag: bool | None = None
    note: str = ""

    def columns(self) -> dict:
        return {"mean_confidence": self.mean_confidence, "unassigned_percent": self.unassigned_percent,
                "unknown_percent": self.unknown_percent,
                "drift": self.drift, "drift_marker": self.drift_marker, "drift_flag": self.drift_flag,
                "qc_note": self.note}


def file_qc(dataset: Dataset, cells: LabelledCells, spec: TransformSpec, reference: MarkerReference | None,
            rows: np.ndarray | None = None) -> FileQC:
    """QC of the cells `rows` (default all) of a labelled file against the model's training reference."""
    take = slice(None) if rows is None else rows
    confidence = np.asarray(cells.confidence if cells.confidence is not None else [])[take]
    labels = np.asarray(cells.population_id)[take]
    share = (lambda mask: float(100 * mask.mean())) if labels.size else (lambda mask: float("nan"))
    qc = FileQC(float(confidence.mean()) if confidence.size else float("nan"), share(labels == UNASSIGNED_ID),
                share(labels == UNKNOWN_ID))
    if reference is None:
        qc.note = "the model was saved without a training-data reference, so drift is not measured"
        return qc
    if reference.features != list(spec.features):
        qc.note = "the model's training-data reference does not match its features"
        return qc
    picked = _strided(np.arange(dataset.n_cells) if rows is None else np.asarray(rows))
    events = gather_rows(dataset.events, picked)  # row by row from a stored study, nothing else made resident
    if len(events) == 0:
        qc.note = "no cells to measure drift on"
        return qc
    x = transform_events(np.asarray(events), dataset.channel_names, spec, dataset.spillover)
    scores = reference.drift(x)
    limits = np.maximum(reference.limits, SAMPLING / np.sqrt(len(x)))
    worst = int(np.argmax(scores / limits))
    labels_of = {c.name: c.label for c in dataset.channels}
    feature = reference.features[worst]
    qc.drift, qc.drift_marker = float(scores[worst]), labels_of.get(feature, feature)
    qc.drift_flag = bool((scores > limits).any())
    return qc


def sample_qc(dataset: Dataset, cells: LabelledCells, spec: TransformSpec,
              reference: MarkerReference | None) -> pd.DataFrame:
    """One row of QC per sample of a labelled dataset (the batch command's columns, per file it was read from)."""
    rows = [{"sample": name, **file_qc(dataset, cells, spec, reference,
                                       np.flatnonzero(np.asarray(dataset.sample_ids) == i)).columns()}
            for i, name in enumerate(dataset.samples)]
    return pd.DataFrame(rows)


def _strided(x: np.ndarray) -> np.ndarray:
    """Every k-th row so at most MAX_CELLS remain (a view, no copy)."""
    return x[:: max(1, -(-len(x) // MAX_CELLS))]
