"""Baselines share the contract (ids kept, float32 probabilities, progress, cancel) and evaluation scores honestly."""
from __future__ import annotations

import numpy as np
import pytest

from cytoauto_core.tools.models import TrainingCancelled
from cytoauto_core.tools.models.baselines import LDAModel, LogisticRegressionModel, XGBoostModel, XGBoostParams
from cytoauto_core.tools.models.evaluation import evaluate_models, score
from synthetic import gaussian_cells, label_split

FAST_XGB = XGBoostParams(n_estimators=30)


@pytest.mark.parametrize("make", [LogisticRegressionModel, LDAModel, lambda: XGBoostModel(FAST_XGB)])
def test_baseline_contract_on_separated_populations(make):
    x, y = gaussian_cells()
    lab, rest = label_split(y, 10)
    calls = []
    model = make().fit(x[lab], y[lab], x[rest], progress=lambda f, m: calls.append((f, m)))
    proba = model.predict_proba(x[rest])
    assert model.classes_.tolist() == [3, 7, 9, 12]
    assert proba.dtype == np.float32 and proba.shape == (len(rest), 4)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(model.classes_[proba.argmax(axis=1)] == y[rest]) > 0.9
    assert calls and calls[-1][0] == 1.0


def test_xgboost_reports_loss_and_can_be_cancelled():
    x, y = gaussian_cells(100)
    calls = []
    XGBoostModel(FAST_XGB).fit(x, y, progress=lambda f, m: calls.append(m))
    assert len(calls) == 3 and all("loss" in m for m in calls)
    with pytest.raises(TrainingCancelled):
        XGBoostModel(FAST_XGB).fit(x, y, should_stop=lambda: True)


def test_score_by_hand():
    classes = np.array([1, 2])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    s = score(np.array([1, 2, 2]), proba, classes)
    assert s.accuracy == pytest.approx(2 / 3)
    assert s.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert s.log_loss == pytest.approx(-(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3, rel=1e-5)
    assert s.auroc == pytest.approx(1.0)


def test_evaluate_models_uses_cv_for_few_labels_and_holdout_for_many():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 8)
    few = evaluate_models({"lda": LDAModel(), "logreg": LogisticRegressionModel()}, x[lab], y[lab], x[rest], seed=1)
    assert few.loc["lda", "scheme"].endswith("fold CV") and list(few.index) == ["lda", "logreg"]
    assert {"accuracy", "macro_f1", "auroc", "log_loss", "fit_seconds"} <= set(few.columns)
    many = evaluate_models({"lda": LDAModel()}, x, y, seed=1)
    assert many.loc["lda", "scheme"] == "holdout 30%"
    assert many.loc["lda", "accuracy"] > 0.9 and 0.9 < many.loc["lda", "auroc"] <= 1.0


def test_evaluation_reports_progress_per_split_and_cancels_inside_a_fit():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 6)
    seen = []
    evaluate_models({"lda": LDAModel(), "xgb": XGBoostModel(FAST_XGB)}, x[lab], y[lab], x[rest], folds=3,
                    progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)
    assert any(m.startswith("xgb, split 3/3: ") for _, m in seen), "messages name the model, split and the fit's step"
    assert len({f for f, m in seen if m.startswith("xgb, split 1/3")}) > 2, "progress moves inside a fit"
    calls = []
    with pytest.raises(TrainingCancelled):
        evaluate_models({"xgb": XGBoostModel(FAST_XGB)}, x[lab], y[lab], x[rest], folds=3,
                        should_stop=lambda: calls.append(1) or len(calls) > 1)
