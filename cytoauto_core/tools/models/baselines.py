"""Baseline classifiers (logistic regression, XGBoost, LDA) behind the common fit/predict_proba contract."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import xgboost as xgb
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression

from ...base.archive import read_npz
from ...prep.transforms import Scaler
from . import Progress, ShouldStop, check_stop, encode_labels, report, softmax


def linear_logit_weights(estimator) -> tuple[np.ndarray, np.ndarray]:
    """A fitted sklearn linear classifier's (coef n_classes × d, intercept) in float32, one row per class.

    Binary problems store a single row; it is expanded to (0, z) so softmax equals the sigmoid.
    """
    coef, intercept = np.asarray(estimator.coef_, np.float64), np.asarray(estimator.intercept_, np.float64)
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return coef.astype(np.float32), intercept.astype(np.float32)


def _fit_scaler(x_labeled: np.ndarray, x_unlabeled: np.ndarray | None, seed: int) -> Scaler:
    """Standard scaler fitted on labelled plus unlabelled features (all cells describe the marker ranges)."""
    x = x_labeled if x_unlabeled is None or len(x_unlabeled) == 0 else np.concatenate([x_labeled, x_unlabeled])
    return Scaler("standard").fit(x, seed=seed)


class LinearModel:
    """Shared linear-softmax inference for LDA and logistic regression: probabilities = softmax(scaled x · W + b)."""

    kind = "linear"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.classes_ = np.empty(0, np.int64)
        self.scaler = Scaler("standard")
        self.coef_ = np.empty((0, 0), np.float32)
        self.intercept_ = np.empty(0, np.float32)

    def estimator(self):
        """A fresh, unfitted sklearn estimator of this model's kind."""
        raise NotImplementedError

    def fit(
        self,
        x_labeled: np.ndarray,
        y: np.ndarray,
        x_unlabeled: np.ndarray | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> "LinearModel":
        """Fit on labelled cells; unlabelled cells only inform the scaler."""
        check_stop(should_stop)
        report(progress, 0.0, f"{self.kind}: fitting")
        self.classes_, index = encode_labels(y)
        self.scaler = _fit_scaler(x_labeled, x_unlabeled, self.seed)
        est = self.estimator().fit(self.scaler.transform(x_labeled), index)
        self.coef_, self.intercept_ = linear_logit_weights(est)
        report(progress, 1.0, f"{self.kind}: done")
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n × n_classes, float32)."""
        return softmax(self.scaler.transform(x) @ self.coef_.T + self.intercept_)

    def params_dict(self) -> dict:
        return {"seed": self.seed}

    def save_state(self, directory: str) -> dict:
        """Write coefficients to linear.npz; return the JSON config."""
        np.savez(os.path.join(directory, "linear.npz"), coef=self.coef_, intercept=self.intercept_,
                 classes=self.classes_)
        return {"scaler": self.scaler.to_dict(), "params": self.params_dict()}

    @classmethod
    def load_state(cls, directory: str, config: dict) -> "LinearModel":
        """Rebuild from linear.npz (bounded read, pickle never used) and the JSON config."""
        model = cls(**config["params"])
        z = read_npz(os.path.join(directory, "linear.npz"))
        model.coef_, model.intercept_, model.classes_ = z["coef"], z["intercept"], z["classes"]
        model.scaler = Scaler.from_dict(config["scaler"])
        return model


class LogisticRegressionModel(LinearModel):
    """Multinomial L2 logistic regression on standardised features."""

    kind = "logreg"

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        self.c = c

    def estimator(self) -> LogisticRegression:
        return LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)

    def params_dict(self) -> dict:
        return {"c": self.c, "seed": self.seed}


class LDAModel(LinearModel):
    """Linear discriminant analysis with Ledoit–Wolf shrinkage (stable with a handful of labels per class)."""

    kind = "lda"

    def estimator(self) -> LinearDiscriminantAnalysis:
        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")


@dataclass
class XGBoostParams:
    """XGBoost settings tuned for few labels: shallow trees, moderate rounds, hist, 2 threads."""

    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.1
    min_child_weight: float = 0.5
    subsample: float = 0.9
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    max_bin: int = 256  # quantile bins per marker (XGBoost's default)
    n_jobs: int = 2
    seed: int = 0


def xgboost_config(params: XGBoostParams, n_classes: int) -> dict:
    """The xgb.train settings for a multi-class softprob booster with these parameters."""
    return {
        "objective": "multi:softprob", "num_class": n_classes, "tree_method": "hist",
        "max_depth": params.max_depth, "eta": params.learning_rate, "min_child_weight": params.min_child_weight,
        "subsample": params.subsample, "colsample_bytree": params.colsample_bytree, "lambda": params.reg_lambda,
        "max_bin": params.max_bin, "nthread": params.n_jobs, "seed": params.seed,
    }


def fit_booster(s: np.ndarray, y: np.ndarray, n_classes: int, params: XGBoostParams, vector_leaves: bool = False,
                progress: Progress | None = None, should_stop: ShouldStop | None = None):
    """A softprob XGBoost booster on scaled cells with classes weighted equally; with `vector_leaves` one tree per
    round serves all classes (multi_output_tree), which applies far faster than one tree per class. Progress and
    cancellation every few rounds."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float32)
    weight = (len(y) / (n_classes * np.maximum(counts, 1.0)))[y]
    config = xgboost_config(params, n_classes)
    if vector_leaves:
        config["multi_strategy"] = "multi_output_tree"
    return xgb.train(config, xgb.DMatrix(s, label=y, weight=weight, nthread=params.n_jobs), params.n_estimators,
                     callbacks=[_XGBProgress(params.n_estimators, progress, should_stop, every=5)])


def booster_probs(booster, s: np.ndarray, n_classes: int) -> np.ndarray:
    """A softprob booster's probabilities for scaled cells (in-place prediction: no DMatrix copy)."""
    proba = booster.inplace_predict(np.ascontiguousarray(s, np.float32))
    return proba.reshape(len(s), n_classes).astype(np.float32, copy=False)


class _XGBProgress(xgb.callback.TrainingCallback):
    """Reports progress (with the training log loss when it is evaluated) every `every` rounds and honours
    cancellation."""

    def __init__(self, rounds: int, progress: Progress | None, should_stop: ShouldStop | None, every: int = 10) -> None:
        super().__init__()
        self.rounds, self.progress, self.should_stop, self.every = rounds, progress, should_stop, every

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.rounds:
            check_stop(self.should_stop)
            losses = evals_log.get("train", {}).get("mlogloss")
            loss = f", loss {losses[-1]:.4f}" if losses else ""
            report(self.progress, (epoch + 1) / self.rounds, f"xgboost: round {epoch + 1} of {self.rounds}{loss}")
        return False


class XGBoostModel:
    """Gradient-boosted trees (hist) on standardised features; saved with the booster's own JSON format."""

    kind = "xgboost"

    def __init__(self, params: XGBoostParams | None = None) -> None:
        self.params = params or XGBoostParams()
        self.classes_ = np.empty(0, np.int64)
        self.scaler = Scaler("standard")
        self.booster = None

    def fit(
        self,
        x_labeled: np.ndarray,
        y: np.ndarray,
        x_unlabeled: np.ndarray | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> "XGBoostModel":
        """Boost with a callback for progress and cancellation; unlabelled cells only inform the scaler."""
        p = self.params
        self.classes_, index = encode_labels(y)
        self.scaler = _fit_scaler(x_labeled, x_unlabeled, p.seed)
        train = xgb.DMatrix(self.scaler.transform(x_labeled), label=index, nthread=p.n_jobs)
        config = {**xgboost_config(p, len(self.classes_)), "eval_metric": "mlogloss"}
        self.booster = xgb.train(config, train, p.n_estimators, evals=[(train, "train")], verbose_eval=False,
                                 callbacks=[_XGBProgress(p.n_estimators, progress, should_stop)])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n × n_classes, float32)."""
        data = xgb.DMatrix(self.scaler.transform(x), nthread=self.params.n_jobs)
        proba = self.booster.predict(data).reshape(len(x), len(self.classes_))
        return proba.astype(np.float32, copy=False)

    def params_dict(self) -> dict:
        return asdict(self.params)

    def save_state(self, directory: str) -> dict:
        """Write the booster as model.json (XGBoost's own format, no pickle); return the JSON config."""
        self.booster.save_model(os.path.join(directory, "model.json"))
        return {"scaler": self.scaler.to_dict(), "params": self.params_dict(), "classes": self.classes_.tolist()}

    @classmethod
    def load_state(cls, directory: str, config: dict) -> "XGBoostModel":
        """Rebuild from model.json and the JSON config."""
        model = cls(XGBoostParams(**config["params"]))
        model.booster = xgb.Booster(params={"nthread": model.params.n_jobs})
        model.booster.load_model(os.path.join(directory, "model.json"))
        model.scaler = Scaler.from_dict(config["scaler"])
        model.classes_ = np.asarray(config["classes"])
        return model

