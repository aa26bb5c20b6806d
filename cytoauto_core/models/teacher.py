"""VIME's first guess: three few-label experts on the labelled cells, agreeing, then smoothed over the unlabelled cells.

Which baseline is best with a handful of labels differs between panels (LDA on most mass cytometry, logistic
regression on some flow panels, boosted trees once there are more labels), so none of them is trusted alone: their
product (confident only where all three agree) is averaged over each unlabelled cell's nearest neighbours in marker
space, the cluster assumption that cells of one population lie together. Cells are in scaled units throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from . import Progress, ShouldStop, check_stop, report, softmax
from .baselines import LDAModel, LogisticRegressionModel, XGBoostParams, booster_probs, fit_booster, linear_logit_weights

NEIGHBOURS = 15
SMOOTHING_STEPS = 3
MAX_SMOOTHED_CELLS = 20_000
BOOSTER_ROUNDS = 30  # vector-leaf trees (one per round for every population): few rounds keep training and applying fast
BOOSTER_LEARNING_RATE = 0.3
BOOSTER_BINS = 64  # a few hundred labelled cells need no finer split points; vector-leaf trees build ~5× faster than with 256
# the first guess's stages in order and their shares of its time (for progress)
STAGES = ("LDA and logistic regression", "XGBoost", "the experts' agreement on unlabelled cells", "nearest neighbours",
          "smoothing over neighbours")
STAGE_SHARES = (0.2, 0.3, 0.05, 0.4, 0.05)  # measured on the demo with ~4,000 labels
QUERY_CHUNK = 4096  # unlabelled cells per neighbour query, so progress and Cancel come between chunks


@dataclass
class FirstGuess:
    """The experts kept for inference and their smoothed agreement on a subsample of the unlabelled cells."""

    linear: tuple[np.ndarray, np.ndarray]  # kernel (d × C) and bias: LDA and logistic regression, logits averaged
    booster: object  # vector-leaf XGBoost on the labels
    rows: np.ndarray  # rows of the unlabelled cells that were smoothed
    probs: np.ndarray  # their smoothed agreement (len(rows) × C)


def fit_first_guess(s_l: np.ndarray, yl: np.ndarray, s_u: np.ndarray, n_classes: int, seed: int, threads: int,
                    rng: np.random.Generator, progress: Progress | None = None,
                    should_stop: ShouldStop | None = None) -> FirstGuess:
    """Fit LDA, logistic regression and XGBoost on the labels; smooth their product of experts over the kNN graph of
    up to MAX_SMOOTHED_CELLS unlabelled cells (each step: half its own agreement, half its neighbours' mean).
    Progress (0–1, by STAGE_SHARES) and cancellation between the stages and every few booster rounds."""
    def stage(name: str, done: float = 0.0) -> None:
        check_stop(should_stop)
        start = sum(STAGE_SHARES[:STAGES.index(name)])
        report(progress, start + done * STAGE_SHARES[STAGES.index(name)], f"first guess: {name}")

    stage("LDA and logistic regression")
    lda = LDAModel().estimator().fit(s_l, yl)
    logreg = LogisticRegressionModel(seed=seed).estimator().fit(s_l, yl)
    (c1, b1), (c2, b2) = linear_logit_weights(lda), linear_logit_weights(logreg)
    kernel, bias = np.ascontiguousarray(((c1 + c2) / 2).T), (b1 + b2) / 2
    stage("XGBoost")
    booster = fit_booster(s_l, yl, n_classes, XGBoostParams(n_estimators=BOOSTER_ROUNDS, learning_rate=BOOSTER_LEARNING_RATE,
                                                         max_bin=BOOSTER_BINS, n_jobs=threads, seed=seed), vector_leaves=True,
                          progress=lambda f, m: stage("XGBoost", f), should_stop=should_stop)

    rows = np.arange(len(s_u)) if len(s_u) <= MAX_SMOOTHED_CELLS else np.sort(
        rng.choice(len(s_u), MAX_SMOOTHED_CELLS, replace=False))
    cells = s_u[rows]
    stage("the experts' agreement on unlabelled cells")
    own = agreement(softmax(cells @ c1.T + b1), softmax(cells @ c2.T + b2), booster_probs(booster, cells, n_classes))
    stage("nearest neighbours")
    index = NearestNeighbors(n_neighbors=min(NEIGHBOURS, len(cells)), n_jobs=threads).fit(cells)
    neighbours = np.empty((len(cells), index.n_neighbors), np.int64)
    for start in range(0, len(cells), QUERY_CHUNK):
        neighbours[start:start + QUERY_CHUNK] = index.kneighbors(cells[start:start + QUERY_CHUNK], return_distance=False)
        stage("nearest neighbours", min(start + QUERY_CHUNK, len(cells)) / len(cells))
    stage("smoothing over neighbours")
    probs = own
    for _ in range(SMOOTHING_STEPS):
        probs = 0.5 * own + 0.5 * probs[neighbours].mean(axis=1)
    report(progress, 1.0, "first guess: done")
    return FirstGuess((kernel, bias.astype(np.float32)), booster, rows, probs.astype(np.float32))


def agreement(*experts: np.ndarray) -> np.ndarray:
    """Renormalised geometric mean of the experts' posteriors: confident only where all of them agree."""
    log = sum(np.log(np.maximum(p, 1e-12)) for p in experts) / len(experts)
    return softmax(log)
