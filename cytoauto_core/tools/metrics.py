"""Scores for clusterings, classifiers and maps against ground truth.

Label convention: integer labels; -1 means "unassigned" (ungated cells in the truth, cells a
model left unassigned in a prediction). Cells whose TRUTH is -1 are ignored by every score.
A PREDICTION of -1 is kept and counts as wrong (never equal to a true population).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.neighbors import NearestNeighbors

from ..base.dataset import NOT_A_POPULATION
from ..base.dataset import UNASSIGNED as UNASSIGNED_NAME
from ..base.labelled import name_key

UNASSIGNED = -1


def _scored(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and truth restricted to cells with a true label (truth != -1)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError("pred and truth must have the same length")
    keep = truth != UNASSIGNED
    return pred[keep], truth[keep]


def silhouette(x: np.ndarray, labels: np.ndarray, sample_size: int = 10_000, seed: int = 0) -> float:
    """Mean Euclidean silhouette of labelled cells on a seeded subsample of `sample_size` cells (all if fewer)."""
    labels = np.asarray(labels)
    keep = np.flatnonzero(labels != UNASSIGNED)
    if np.unique(labels[keep]).size < 2:
        return float("nan")
    if keep.size > sample_size:
        keep = np.sort(np.random.default_rng(seed).choice(keep, sample_size, replace=False))
    return float(skm.silhouette_score(x[keep], labels[keep]))


def purity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of cells whose predicted cluster's majority true population is their own; cluster -1 scores 0."""
    pred, truth = _scored(pred, truth)
    if pred.size == 0:
        return float("nan")
    table = pd.crosstab(pred, truth)
    table = table.loc[table.index != UNASSIGNED]
    return float(table.max(axis=1).sum() / pred.size)


def adjusted_rand(pred: np.ndarray, truth: np.ndarray) -> float:
    """Adjusted Rand index over cells with a true label (a predicted -1 is one more cluster)."""
    return float(skm.adjusted_rand_score(*_scored(pred, truth)[::-1]))


def accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of labelled cells predicted correctly."""
    pred, truth = _scored(pred, truth)
    return float(np.mean(pred == truth)) if pred.size else float("nan")


def macro_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """Unweighted mean F1 over the true populations present, so rare populations count as much as big ones."""
    pred, truth = _scored(pred, truth)
    return float(skm.f1_score(truth, pred, labels=np.unique(truth), average="macro", zero_division=0))


def matched_f1(clusters: np.ndarray, truth: np.ndarray) -> float:
    """Mean F1 over true populations after one-to-one Hungarian matching of clusters to populations.

    The clustering score of Weber & Robinson (2016): each population is matched to at most one
    cluster so the summed F1 is largest; a population left without a cluster scores 0.
    """
    from scipy.optimize import linear_sum_assignment

    clusters, truth = _scored(clusters, truth)
    pops, t = np.unique(truth, return_inverse=True)
    groups, c = np.unique(clusters, return_inverse=True)
    table = np.zeros((pops.size, groups.size))
    np.add.at(table, (t, c), 1)
    f1 = 2 * table / (table.sum(axis=1, keepdims=True) + table.sum(axis=0, keepdims=True))
    rows, cols = linear_sum_assignment(f1, maximize=True)
    return float(f1[rows, cols].sum() / pops.size)


def per_population_report(pred: np.ndarray, truth: np.ndarray, names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and support per true population (rows: labels; `names` maps label → population name)."""
    pred, truth = _scored(pred, truth)
    labels = np.unique(truth)
    p, r, f, s = skm.precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    names = names or {}
    return pd.DataFrame(
        {"name": [names.get(int(k), str(k)) for k in labels], "precision": p, "recall": r, "f1": f, "support": s},
        index=pd.Index(labels, name="label"),
    )


def codes_by_name(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Integer labels for per-cell predicted and true population names, matched by name_key.

    Returns (pred, truth, vocabulary): `vocabulary[i]` is true population i as the annotation spells it; true names
    that are no population ('', 'unassigned', 'nan') and a predicted 'unassigned' become -1; a predicted name the
    annotation lacks becomes len(vocabulary), which never equals a true population.
    """
    truth_codes, truth_names = pd.factorize(np.asarray(truth, dtype=object).astype(str))
    pred_codes, pred_names = pd.factorize(np.asarray(predicted, dtype=object).astype(str))
    vocabulary: dict[str, str] = {}
    for name in sorted(truth_names):
        if name.lower() not in NOT_A_POPULATION:
            vocabulary.setdefault(name_key(name), name)
    index = {key: i for i, key in enumerate(vocabulary)}
    truth_lookup = np.array([index.get(name_key(n), UNASSIGNED) for n in truth_names] + [UNASSIGNED], np.int32)
    pred_lookup = np.array([UNASSIGNED if n == UNASSIGNED_NAME else index.get(name_key(n), len(index))
                            for n in pred_names] + [UNASSIGNED], np.int32)
    return pred_lookup[pred_codes], truth_lookup[truth_codes], list(vocabulary.values())


def confusion(pred: np.ndarray, truth: np.ndarray) -> pd.DataFrame:
    """Cell counts: rows true populations, columns predicted labels (including -1 when predicted)."""
    pred, truth = _scored(pred, truth)
    rows = np.unique(truth)
    cols = np.union1d(rows, np.unique(pred))
    m = skm.confusion_matrix(truth, pred, labels=cols)
    return pd.DataFrame(m[np.isin(cols, rows)], index=pd.Index(rows, name="truth"), columns=pd.Index(cols, name="pred"))


def auroc(proba: np.ndarray, truth: np.ndarray, classes: list[int] | np.ndarray) -> float:
    """Macro one-vs-rest AUROC; `proba[:, j]` is the probability of `classes[j]`; absent classes are skipped."""
    truth = np.asarray(truth)
    keep = truth != UNASSIGNED
    proba, truth = np.asarray(proba)[keep], truth[keep]
    scores = []
    for j, c in enumerate(classes):
        positive = truth == c
        if 0 < positive.sum() < positive.size:
            scores.append(skm.roc_auc_score(positive, proba[:, j]))
    return float(np.mean(scores)) if scores else float("nan")


def knn_label_agreement(
    coords: np.ndarray, labels: np.ndarray, k: int = 15, seed: int = 0, max_cells: int = 200_000
) -> float:
    """Mean fraction of each labelled cell's k nearest labelled neighbours (itself excluded) that share its label.

    Works for a 2-D map or the marker space alike: how well neighbourhoods keep populations
    together. Unlabelled cells (-1) are left out; above `max_cells` labelled cells, a seeded
    random subsample of that size is scored with neighbours searched within the subsample.
    """
    labels = np.asarray(labels)
    keep = np.flatnonzero(labels != UNASSIGNED)
    if keep.size > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_cells, replace=False))
    if keep.size <= k:
        return float("nan")
    y = labels[keep]
    nn = NearestNeighbors(n_neighbors=k, n_jobs=2).fit(coords[keep])
    neighbours = nn.kneighbors(return_distance=False)
    return float(np.mean(y[neighbours] == y[:, None]))
