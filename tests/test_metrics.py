"""Metrics against sklearn on known inputs and hand-computed values; -1 handling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from conftest import LEVINE
from cytoauto_core.tools import metrics as m

TRUTH = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1, -1])
PRED = np.array([5, 5, 7, 7, 7, 7, 2, -1, 5, 7])


def test_purity_by_hand():
    # clusters over labelled cells: 5 -> {0,0} (2), 7 -> {0,1,1,1} (3), 2 -> {2} (1), -1 -> {2} (scores 0)
    assert m.purity(PRED, TRUTH) == pytest.approx(6 / 8)
    assert m.purity(TRUTH, TRUTH) == 1.0


def test_scores_ignore_unlabelled_truth_and_match_sklearn():
    keep = TRUTH != -1
    p, t = PRED[keep], TRUTH[keep]
    assert m.adjusted_rand(PRED, TRUTH) == pytest.approx(skm.adjusted_rand_score(t, p))
    assert m.accuracy(PRED, TRUTH) == pytest.approx(1 / 8)
    relabelled = np.array([0, 0, 1, 1, 1, 1, 2, -1, 0, 0])
    assert m.accuracy(relabelled, TRUTH) == pytest.approx(skm.accuracy_score(t, relabelled[keep]))
    assert m.macro_f1(relabelled, TRUTH) == pytest.approx(
        skm.f1_score(t, relabelled[keep], labels=[0, 1, 2], average="macro"))
    report = m.per_population_report(relabelled, TRUTH, {0: "T", 1: "B"})
    assert report["name"].tolist() == ["T", "B", "2"] and report["support"].tolist() == [3, 3, 2]
    assert report.loc[2, "recall"] == 0.5 and report.loc[2, "precision"] == 1.0
    assert report.loc[0, "f1"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    cm = m.confusion(relabelled, TRUTH)
    assert cm.index.tolist() == [0, 1, 2] and cm.columns.tolist() == [-1, 0, 1, 2]
    assert cm.loc[2, -1] == 1 and cm.to_numpy().sum() == 8


def test_auroc_matches_sklearn_ovr_macro():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    proba = rng.dirichlet(np.ones(3), 300) + np.eye(3)[truth] * 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    expected = skm.roc_auc_score(truth, proba, multi_class="ovr", average="macro")
    with_unlabelled = np.concatenate([truth, [-1, -1]])
    assert m.auroc(np.vstack([proba, [[1, 0, 0], [0, 1, 0]]]), with_unlabelled, [0, 1, 2]) == pytest.approx(expected)


def test_silhouette_and_knn_agreement():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, -1], 200)
    x = rng.normal(0, 1, (600, 2)) + np.where(labels[:, None] == 1, 20.0, 0.0)
    keep = labels != -1
    assert m.silhouette(x, labels, sample_size=10_000) == pytest.approx(skm.silhouette_score(x[keep], labels[keep]))
    assert 0.9 < m.silhouette(x, labels, sample_size=100, seed=1) <= 1.0
    assert m.knn_label_agreement(x, labels, k=15) == 1.0
    mixed = rng.normal(0, 1, (600, 2))
    assert abs(m.knn_label_agreement(mixed, labels, k=15) - 0.5) < 0.1


def test_names_match_ignoring_case_spaces_and_underscores():
    truth = pd.read_csv(LEVINE / "Levine_32dim_labeled30k_arcsinh.csv", usecols=["population"])["population"]
    predicted = truth.str.replace("_", " ").str.lower().to_numpy()  # 'cd4 t cells' for 'CD4_T_cells'
    predicted[:100] = "unassigned"
    predicted[100:200] = "Not a population of the annotation"
    pred, true, vocabulary = m.codes_by_name(predicted, truth.to_numpy())
    assert len(vocabulary) == 14 and "CD4_T_cells" in vocabulary, "the annotation's own spelling is reported"
    assert m.accuracy(pred, true) == pytest.approx(1 - 200 / len(truth))
    assert (pred[:100] == -1).all() and (pred[100:200] == len(vocabulary)).all()
    _, gated, _ = m.codes_by_name(np.array(["a", "b", "c"]), np.array(["CD4 T", "unassigned", "nan"]))
    assert gated.tolist() == [0, -1, -1], "cells the annotation leaves unassigned are not scored"
