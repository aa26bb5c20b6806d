"""Cell classifiers sharing one contract (fit with progress/cancel, predict_proba, classes_), bundles and scoring.

May import: base, prep, io, tools."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ...base.contracts import Progress, ShouldStop


class TrainingCancelled(Exception):
    """Raised inside fit() when the caller's should_stop() returns True, so the app can abandon a run cleanly."""


class Classifier(Protocol):
    """What every model offers: sklearn-like fit/predict_proba plus bundle state for pickle-free saving."""

    kind: str
    classes_: np.ndarray

    def fit(
        self,
        x_labeled: np.ndarray,
        y: np.ndarray,
        x_unlabeled: np.ndarray | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> "Classifier": ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...

    def params_dict(self) -> dict: ...

    def save_state(self, directory: str) -> dict: ...


def check_stop(should_stop: ShouldStop | None) -> None:
    """Raise TrainingCancelled when the caller asked to stop; called between training blocks."""
    if should_stop is not None and should_stop():
        raise TrainingCancelled("Training was cancelled.")


def report(progress: Progress | None, fraction: float, message: str) -> None:
    """Forward a progress fraction in [0, 1] and a message to the caller's callback, if any."""
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted class ids and each label's index into them (models train on indices 0..C-1)."""
    classes, index = np.unique(np.asarray(y), return_inverse=True)
    return classes, index.astype(np.int32)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by each row's maximum for stability; `z` itself is not modified."""
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32, copy=False)
