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
    base = np.full(probs.shape[1], 1.0 / probs.shape[1]) if train_prior is None else np.asarray(train_prior, np.float64)
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
    base = np.full(probs.shape[1], 1.0 / probs.shape[1]) if train_prior is None else np.asarray(train_prior)
    out = probs * (np.asarray(prior) / np.maximum(base, 1e-12)).astype(probs.dtype)
    out /= np.maximum(out.sum(axis=1, keepdims=True), np.finfo(out.dtype).tiny)
    return out
