"""VIME's few-label experts: LDA, logistic regression and a booster, fitted on the labelled cells, and how much each
is trusted on this panel.

Which baseline is best with a handful of labels differs between panels (LDA on most mass cytometry, logistic
regression on some flow panels, boosted trees once there are more labels), so their shares of the experts' weight are
chosen on the user's own labels: every split on a grid of tenths is weighed by the out-of-fold likelihood of the
labels under the experts' weighted geometric mean (each labelled cell predicted by experts fitted without its fold),
and the shares are the likelihood-weighted mean of the splits (the posterior mean under a uniform prior over the
grid). No share is tuned on a reference data set. LDA and logistic regression are both linear in the
cells, so their share-weighted logits form one linear expert. The experts do not teach the network: measured on the
dev suite, a network taught by the experts' pseudo-labels inherits their mistakes (a rare population over-called
several times), while one that learns from the labels and its own pseudo-labels makes different mistakes, which the
blend averages out. Cells are in scaled units throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from . import Progress, ShouldStop, check_stop, report
from .baselines import (LDAModel, LogisticRegressionModel, XGBoostParams, booster_probs, fit_booster,
                        linear_logit_weights)

BOOSTER_ROUNDS = 30  # vector-leaf trees (one per round for every population): few rounds keep training and applying fast
BOOSTER_LEARNING_RATE = 0.3
BOOSTER_BINS = 64  # a few hundred labelled cells need no finer split points; vector-leaf trees build ~5× faster than with 256
MAX_FOLDS = 5  # out-of-fold folds (fewer when a population has fewer labels)
SHARE_STEP = 0.1  # grid of the experts' shares
DEFAULT_SHARES = (1 / 9, 1 / 9, 7 / 9)  # LDA, logistic regression, booster: the fixed split used before, kept when a
# population has a single label (no out-of-fold prediction is possible)
PROBABILITY_FLOOR = 1e-6  # the booster's probabilities are floored before their log (softprob can round to 0)
EXPERT_NAMES = ("LDA", "logistic regression", "booster")


@dataclass
class Experts:
    """The experts kept for inference, and the shares they were given."""

    linear: tuple[np.ndarray, np.ndarray]  # kernel (d × C) and bias: LDA's and logistic regression's logits by share
    booster: object  # vector-leaf XGBoost on the labels
    shares: tuple[float, float, float]  # LDA, logistic regression, booster; sum 1


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits (exact, no floor: a linear expert's confident veto is kept)."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def booster_log_probs(booster, s: np.ndarray, n_classes: int) -> np.ndarray:
    """The booster's floored log-probabilities for scaled cells."""
    return np.log(booster_probs(booster, s, n_classes) + np.float32(PROBABILITY_FLOOR))


def fit_experts(s_l: np.ndarray, yl: np.ndarray, n_classes: int, seed: int, threads: int,
                progress: Progress | None = None, should_stop: ShouldStop | None = None) -> Experts:
    """Fit LDA, logistic regression and XGBoost on the labels and choose their shares by out-of-fold likelihood.
    Progress (0–1) and cancellation between fits and every few booster rounds."""
    folds = _folds(yl, seed)
    fits = len(folds) + 1
    log_lda, log_logreg, log_booster = (np.zeros((len(yl), n_classes), np.float32) for _ in range(3))
    for i, (train, held) in enumerate(folds):
        lda, logreg, booster = _fit_three(s_l[train], yl[train], n_classes, seed, threads,
                                          _stage(progress, should_stop, i / fits, 1 / fits, "out-of-fold"))
        log_lda[held] = log_softmax(s_l[held] @ lda[0].T + lda[1])
        log_logreg[held] = log_softmax(s_l[held] @ logreg[0].T + logreg[1])
        log_booster[held] = booster_log_probs(booster, s_l[held], n_classes)
    shares = choose_shares(log_lda, log_logreg, log_booster, yl) if folds else DEFAULT_SHARES
    lda, logreg, booster = _fit_three(s_l, yl, n_classes, seed, threads,
                                      _stage(progress, should_stop, 1 - 1 / fits, 1 / fits, "on every label"))
    report(progress, 1.0, "experts: done")
    return Experts(combine_linear(lda, logreg, shares), booster, shares)


def choose_shares(log_lda: np.ndarray, log_logreg: np.ndarray, log_booster: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The (LDA, logistic regression, booster) shares: the mean over a grid of splits (steps of SHARE_STEP, equally
    likely beforehand) weighted by how likely each split's weighted geometric mean makes the labelled cells'
    out-of-fold populations. A split the labels clearly favour takes nearly all the weight; splits a handful of labels
    cannot tell apart are averaged, so that chance does not pick an extreme one. Rounded to 4 decimals, summing to 1."""
    rows = np.arange(len(y))
    n = int(round(1 / SHARE_STEP))
    grid = np.array([(i / n, j / n, 1 - (i + j) / n) for i in range(n + 1) for j in range(n + 1 - i)])
    log_likelihood = np.array([log_softmax(a * log_lda + b * log_logreg + c * log_booster)[rows, y].sum()
                               for a, b, c in grid])
    posterior = np.exp(log_likelihood - log_likelihood.max())
    a, b, _ = posterior @ grid / posterior.sum()
    a, b = round(float(a), 4), round(float(b), 4)
    return a, b, round(1.0 - a - b, 4)


def combine_linear(lda: tuple[np.ndarray, np.ndarray], logreg: tuple[np.ndarray, np.ndarray],
                   shares: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One linear expert from LDA's and logistic regression's (coef C × d, intercept): their logits weighted by their
    shares, so that (a + b) · log_softmax(its logits) equals a · log_softmax(LDA) + b · log_softmax(logreg) up to a
    per-cell constant. Kernel d × C and bias in float32; the plain average when both shares are 0."""
    a, b = shares[0], shares[1]
    a, b = (a / (a + b), b / (a + b)) if a + b > 0 else (0.5, 0.5)
    kernel = a * lda[0].astype(np.float64) + b * logreg[0].astype(np.float64)
    bias = a * lda[1].astype(np.float64) + b * logreg[1].astype(np.float64)
    return np.ascontiguousarray(kernel.T, np.float32), bias.astype(np.float32)


def _folds(yl: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of the labelled cells, as many as the smallest population allows (≤ MAX_FOLDS); none when a
    population has a single label."""
    k = int(min(MAX_FOLDS, np.bincount(yl).min()))
    if k < 2:
        return []
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(yl)), yl))


def _fit_three(s: np.ndarray, y: np.ndarray, n_classes: int, seed: int, threads: int, progress: Progress):
    """LDA's and logistic regression's (coef C × d, intercept) and the booster, fitted on these cells."""
    progress(0.0, "LDA and logistic regression")
    lda = linear_logit_weights(LDAModel().estimator().fit(s, y))
    logreg = linear_logit_weights(LogisticRegressionModel(seed=seed).estimator().fit(s, y))
    progress(0.1, "XGBoost")
    booster = fit_booster(s, y, n_classes, XGBoostParams(n_estimators=BOOSTER_ROUNDS, learning_rate=BOOSTER_LEARNING_RATE,
                                                       max_bin=BOOSTER_BINS, n_jobs=threads, seed=seed), vector_leaves=True,
                          progress=lambda fraction, message: progress(0.1 + 0.9 * fraction, "XGBoost"))
    return lda, logreg, booster


def _stage(progress: Progress | None, should_stop: ShouldStop | None, start: float, width: float, what: str) -> Progress:
    """A progress callback for one set of fits, covering [start, start + width] of the experts' progress."""
    def moved(fraction: float, message: str) -> None:
        check_stop(should_stop)
        report(progress, start + width * min(max(fraction, 0.0), 1.0), f"experts ({what}): {message}")

    return moved
