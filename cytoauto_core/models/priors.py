"""Population frequencies among unlabelled cells, so models trained on balanced labels stop over-calling rare populations.

Labels are drawn a handful per population, so every model here trains as if populations were equally common.
Saerens, Latinne & Decaestecker (2002, Neural Computation 14:21–41) re-estimate the class priors of new data by EM
on the classifier's own posteriors; multiplying posteriors by prior / training prior then corrects them.
"""
from __future__ import annotations

import numpy as np


def estimate_priors(probs: np.ndarray, train_prior: np.ndarray | None = None, iters: int = 200,
                    tol: float = 1e-7) -> np.ndarray:
    """EM estimate of the class frequencies behind `probs` (n × C posteriors under `train_prior`, uniform if None)."""
    probs = np.asarray(probs, np.float64)
    base = _training_prior(train_prior, probs.shape[1])
    prior = base.copy()
    for _ in range(iters):
        shifted = shift_priors(probs, prior, base)
        new = shifted.mean(axis=0)
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def shift_priors(probs: np.ndarray, prior: np.ndarray, train_prior: np.ndarray | None = None) -> np.ndarray:
    """Posteriors re-weighted from `train_prior` (uniform if None) to `prior`, renormalised per cell."""
    base = _training_prior(train_prior, probs.shape[1])
    out = probs * (np.asarray(prior) / np.maximum(base, 1e-12)).astype(probs.dtype)
    out /= np.maximum(out.sum(axis=1, keepdims=True), np.finfo(out.dtype).tiny)
    return out


def _training_prior(train_prior: np.ndarray | None, n_classes: int) -> np.ndarray:
    """The class frequencies a model was trained under: as given, or uniform (balanced training) when None."""
    if train_prior is None:
        return np.full(n_classes, 1.0 / n_classes)
    return np.asarray(train_prior, np.float64)
