"""VIME's few-label experts: what they learn from a handful of labels and what they keep for inference."""
from __future__ import annotations

import numpy as np
import pytest

from cytoauto_core.tools.models import TrainingCancelled, softmax
from cytoauto_core.tools.models.baselines import booster_probs
from cytoauto_core.tools.models.baselines import linear_logit_weights, LDAModel, LogisticRegressionModel
from cytoauto_core.tools.models.experts import DEFAULT_SHARES, choose_shares, combine_linear, fit_experts, log_softmax
from cytoauto_core.prep.transforms import Scaler
from synthetic import gaussian_cells, label_split


def test_experts_label_separated_populations_from_five_labels_each():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    classes, yl = np.unique(y[lab], return_inverse=True)
    experts = fit_experts(s[lab], yl.astype(np.int32), len(classes), seed=0, threads=1)
    kernel, bias = experts.linear
    linear = softmax(s[rest] @ kernel + bias)
    assert kernel.shape == (x.shape[1], len(classes))
    assert np.mean(classes[linear.argmax(axis=1)] == y[rest]) > 0.95
    booster = booster_probs(experts.booster, s[rest], len(classes))
    assert np.mean(classes[booster.argmax(axis=1)] == y[rest]) > 0.9
    assert sum(experts.shares) == pytest.approx(1.0) and min(experts.shares) >= 0


def test_shares_go_to_the_expert_that_predicts_held_out_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    right = np.log(np.full((30, 3), 0.05))
    right[np.arange(30), y] = np.log(0.9)
    noise = log_softmax(rng.normal(size=(30, 3)))
    lda, logreg, booster = choose_shares(right, noise, noise, y)
    assert lda > 0.9 and lda + logreg + booster == pytest.approx(1.0)
    assert choose_shares(noise, noise, right, y)[2] > 0.9
    overconfident = np.log(np.full((30, 3), 1e-9))
    overconfident[np.arange(30), y] = 0.0
    overconfident[0] = overconfident[10]  # one held-out cell of population 0 called population 1 with certainty
    lda, _, booster = choose_shares(overconfident, noise, right, y)
    assert 0 < lda < 1 and 0 < booster < 1, "a confident mistake costs likelihood: the certain expert is tempered"


def test_splits_the_labels_cannot_tell_apart_are_averaged():
    y = np.repeat(np.arange(2), 3)
    same = np.log(np.full((6, 2), 0.5))
    lda, logreg, booster = choose_shares(same, same, same, y)
    assert (lda, logreg, booster) == pytest.approx((1 / 3, 1 / 3, 1 / 3), abs=1e-4), "equally likely splits: their mean"


def test_the_combined_linear_expert_weighs_lda_and_logistic_regression_by_their_shares():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    _, yl = np.unique(y[lab], return_inverse=True)
    lda = linear_logit_weights(LDAModel().estimator().fit(s[lab], yl))
    logreg = linear_logit_weights(LogisticRegressionModel().estimator().fit(s[lab], yl))
    shares = (0.3, 0.1, 0.6)
    kernel, bias = combine_linear(lda, logreg, shares)
    combined = 0.4 * log_softmax(s[rest] @ kernel + bias)
    separate = 0.3 * log_softmax(s[rest] @ lda[0].T + lda[1]) + 0.1 * log_softmax(s[rest] @ logreg[0].T + logreg[1])
    np.testing.assert_allclose(log_softmax(combined), log_softmax(separate), atol=1e-4)


def test_a_population_with_one_label_keeps_the_default_shares():
    x, y = gaussian_cells()
    lab, _ = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    _, yl = np.unique(y[lab], return_inverse=True)
    keep = np.concatenate([np.flatnonzero(yl != 0), np.flatnonzero(yl == 0)[:1]])
    experts = fit_experts(s[lab][keep], yl[keep].astype(np.int32), 4, seed=0, threads=1)
    assert experts.shares == DEFAULT_SHARES


def test_experts_report_progress_in_order_and_stop_when_asked():
    x, y = gaussian_cells()
    lab, _ = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    _, yl = np.unique(y[lab], return_inverse=True)
    seen: list[float] = []
    fit_experts(s[lab], yl.astype(np.int32), 4, seed=0, threads=1, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(TrainingCancelled):
        fit_experts(s[lab], yl.astype(np.int32), 4, seed=0, threads=1, should_stop=lambda: True)
