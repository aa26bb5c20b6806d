"""Which unlabelled cells the VIME network learns from as if labelled, and with which population.

The network is trained with every population equally weighted (a few labels each, balanced batches), so its
posteriors assume equal shares: a population of 1 % is then called for far more cells than it
has. Before picking pseudo-labels the posteriors are re-weighted to the shares estimated among the unlabelled cells
themselves (Saerens, Latinne & Decaestecker 2002, EM), so a rare population's pseudo-labels are the cells that
really look like it; the network still sees every population equally often (balanced batches).
"""
from __future__ import annotations

import numpy as np

PRIOR_ITERATIONS = 100
PRIOR_TOLERANCE = 1e-6


def estimate_prior(probs: np.ndarray) -> np.ndarray:
    """Population shares among the cells whose posteriors (trained at equal shares) are `probs`: EM of Saerens et al."""
    p = np.asarray(probs, np.float64)
    prior = np.full(p.shape[1], 1.0 / p.shape[1])
    for _ in range(PRIOR_ITERATIONS):
        q = p * prior
        q /= q.sum(axis=1, keepdims=True)
        new = q.mean(axis=0)
        converged = np.abs(new - prior).max() < PRIOR_TOLERANCE
        prior = new
        if converged:
            break
    return prior


def reweight_to_prior(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Posteriors trained at equal population shares, re-weighted to the shares `prior` and renormalised."""
    q = np.asarray(probs, np.float64) * prior
    return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)


def select_pseudo_labels(probs: np.ndarray, threshold: float, fraction: float, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced confident pseudo-labels from equal-share posteriors: re-weighted to the estimated shares, then
    per predicted population the most confident `fraction` above `threshold`, at most `cap`. Rows and populations."""
    probs = reweight_to_prior(probs, estimate_prior(probs))
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    picked: list[np.ndarray] = []
    for c in range(probs.shape[1]):
        cand = np.flatnonzero((pred == c) & (conf >= threshold))
        n = min(cap, int(np.ceil(fraction * cand.size)))
        picked.append(cand[np.argsort(-conf[cand], kind="stable")[:n]])
    idx = np.concatenate(picked).astype(np.int64)
    return idx, pred[idx].astype(np.int32)
