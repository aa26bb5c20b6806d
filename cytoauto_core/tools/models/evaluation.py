"""Scoring classifiers honestly: holdout or stratified k-fold with accuracy, macro-F1, AUROC (OvR macro) and log loss."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from . import Progress, ShouldStop, report

# the comparison as a person reads it: stored names → shown names, in the order shown
SCORE_NAMES = {"macro_f1": "Macro-F1", "accuracy": "Accuracy", "auroc": "AUROC", "log_loss": "Log loss",
               "seconds": "Time to score (s)"}


@dataclass
class Scores:
    """One model's scores on one evaluation split."""

    accuracy: float
    macro_f1: float
    auroc: float
    log_loss: float


def score(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> Scores:
    """Scores of probabilities (columns = `classes`) against true class ids; AUROC averages classes present with both outcomes."""
    y_true = np.asarray(y_true)
    pred = classes[proba.argmax(axis=1)]
    col = {c: i for i, c in enumerate(classes.tolist())}
    idx = np.array([col.get(v, -1) for v in y_true.tolist()])
    p_true = np.where(idx >= 0, proba[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
    aucs = [roc_auc_score(idx == j, proba[:, j]) for j in range(len(classes)) if 0 < np.sum(idx == j) < len(idx)]
    return Scores(
        accuracy=float(accuracy_score(y_true, pred)),
        macro_f1=float(f1_score(y_true, pred, average="macro", labels=np.unique(y_true))),
        auroc=float(np.mean(aucs)) if aucs else float("nan"),
        log_loss=float(-np.mean(np.log(np.clip(p_true, 1e-15, 1.0)))),
    )


def fit_and_score(model, x_train, y_train, x_unlabeled, x_test, y_test, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> dict:
    """Fit a copy of an unfitted model (passing on progress and cancellation), score it on the test cells and time
    the fit."""
    model = copy.deepcopy(model)
    start = time.perf_counter()
    model.fit(x_train, y_train, x_unlabeled, progress=progress, should_stop=should_stop)
    seconds = time.perf_counter() - start
    s = score(y_test, model.predict_proba(x_test), model.classes_)
    return {**s.__dict__, "fit_seconds": seconds}


def evaluate_models(
    models: dict,
    x: np.ndarray,
    y: np.ndarray,
    x_unlabeled: np.ndarray | None = None,
    holdout: float = 0.3,
    seed: int = 0,
    min_per_class_for_holdout: int = 20,
    folds: int = 5,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> pd.DataFrame:
    """Score each unfitted model (name → model) on labelled cells: a stratified holdout when every class has
    at least `min_per_class_for_holdout` labels, else stratified k-fold (k ≤ smallest class); mean over folds, with
    `seconds` and `fits`, the wall time and number of a model's fits (with their scoring). Progress (0–1 over all
    fits) names the model and split; `should_stop` can cancel inside any fit."""
    y = np.asarray(y)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    k = held_out_fits(smallest, folds, min_per_class_for_holdout)
    if k == 1:
        tr, te = train_test_split(np.arange(len(y)), test_size=holdout, stratify=y, random_state=seed)
        splits, scheme = [(tr, te)], f"holdout {holdout:.0%}"
    else:
        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y))
        scheme = f"{k}-fold CV"
    rows = []
    fits = len(models) * len(splits)
    for m, (name, model) in enumerate(models.items()):
        results = []
        start = time.perf_counter()
        for f, (tr, te) in enumerate(splits):
            step = _sub_progress(progress, (m * len(splits) + f) / fits, 1 / fits, f"{name}, split {f + 1}/{len(splits)}")
            results.append(fit_and_score(model, x[tr], y[tr], x_unlabeled, x[te], y[te], step, should_stop))
        row = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
        rows.append({"model": name, **row, "seconds": time.perf_counter() - start, "fits": len(splits),
                     "scheme": scheme})
    return pd.DataFrame(rows).set_index("model")


def held_out_fits(smallest: int, folds: int = 5, min_per_class_for_holdout: int = 20) -> int:
    """Fits it takes to score one model when the smallest population has `smallest` labels: 1 (a holdout) from
    `min_per_class_for_holdout` labels, else k of a k-fold cross-validation (k ≤ `smallest`, at most `folds`)."""
    return 1 if smallest >= min_per_class_for_holdout else max(2, min(folds, smallest))


def held_out_text(fits: int, holdout: float = 0.3) -> str:
    """How a model with `fits` held-out fits was scored, in words."""
    if fits == 1:
        return f"a {holdout:.0%} holdout of the labelled cells"
    return f"{fits}-fold cross-validation (each labelled cell held out once)"


def readable_scores(scores: pd.DataFrame, applied: str | None = None) -> pd.DataFrame:
    """A comparison table (models × stored score names) with the names a person reads (SCORE_NAMES) and the applied
    model first, marked '(applied)', so its score is read beside the others'."""
    order = sorted(scores.index, key=lambda name: name != applied)
    table = scores.loc[order, [c for c in SCORE_NAMES if c in scores.columns]].astype(float)
    table.index = [f"{name} (applied)" if name == applied else str(name) for name in order]
    table.index.name = "Model"
    return table.rename(columns=SCORE_NAMES)


def _sub_progress(progress: Progress | None, start: float, span: float, label: str) -> Progress:
    """A fit's progress callback mapped onto [start, start + span] of the whole evaluation, its messages labelled."""
    report(progress, start, label)
    return lambda fraction, message: report(progress, start + span * fraction, f"{label}: {message}")
