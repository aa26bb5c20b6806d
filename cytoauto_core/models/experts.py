"""VIME's few-label experts: a linear pair (LDA + logistic regression) and a booster, fitted on the labelled cells.

Which baseline is best with a handful of labels differs between panels (LDA on most mass cytometry, logistic
regression on some flow panels, boosted trees once there are more labels), so the final call blends both experts with
the network instead of trusting one. They do not teach the network: measured on the dev suite, a network taught by
the experts' pseudo-labels inherits their mistakes (a rare population over-called several times), while one that
learns from the labels and its own pseudo-labels makes different mistakes, which the blend averages out.
Cells are in scaled units throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Progress, ShouldStop, check_stop, report
from .baselines import LDAModel, LogisticRegressionModel, XGBoostParams, fit_booster, linear_logit_weights

BOOSTER_ROUNDS = 30  # vector-leaf trees (one per round for every population): few rounds keep training and applying fast
BOOSTER_LEARNING_RATE = 0.3
BOOSTER_BINS = 64  # a few hundred labelled cells need no finer split points; vector-leaf trees build ~5× faster than with 256
LINEAR_SHARE = 0.3  # the linear pair's share of the experts' time (for progress), measured on the demo


@dataclass
class Experts:
    """The experts kept for inference."""

    linear: tuple[np.ndarray, np.ndarray]  # kernel (d × C) and bias: LDA and logistic regression, logits averaged
    booster: object  # vector-leaf XGBoost on the labels


def fit_experts(s_l: np.ndarray, yl: np.ndarray, n_classes: int, seed: int, threads: int,
                progress: Progress | None = None, should_stop: ShouldStop | None = None) -> Experts:
    """Fit LDA and logistic regression (their logits averaged into one linear expert) and XGBoost on the labels.
    Progress (0–1) and cancellation before each and every few booster rounds."""
    check_stop(should_stop)
    report(progress, 0.0, "experts: LDA and logistic regression")
    lda = LDAModel().estimator().fit(s_l, yl)
    logreg = LogisticRegressionModel(seed=seed).estimator().fit(s_l, yl)
    (c1, b1), (c2, b2) = linear_logit_weights(lda), linear_logit_weights(logreg)
    kernel, bias = np.ascontiguousarray(((c1 + c2) / 2).T), ((b1 + b2) / 2).astype(np.float32)

    def booster_progress(fraction: float, message: str) -> None:
        check_stop(should_stop)
        report(progress, LINEAR_SHARE + (1 - LINEAR_SHARE) * fraction, "experts: XGBoost")

    booster_progress(0.0, "")
    booster = fit_booster(s_l, yl, n_classes, XGBoostParams(n_estimators=BOOSTER_ROUNDS, learning_rate=BOOSTER_LEARNING_RATE,
                                                         max_bin=BOOSTER_BINS, n_jobs=threads, seed=seed), vector_leaves=True,
                          progress=booster_progress, should_stop=should_stop)
    report(progress, 1.0, "experts: done")
    return Experts((kernel, bias), booster)
