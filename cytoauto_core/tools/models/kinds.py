"""The classifiers a bundle can hold, by `kind`: what loads a saved model without executing code from it."""
from __future__ import annotations

from .baselines import LDAModel, LogisticRegressionModel, XGBoostModel


def classifier_types() -> dict:
    """Classifier classes by `kind`; VIME is imported lazily because it pulls in TensorFlow only to train."""
    from .vime import VIMEClassifier

    return {c.kind: c for c in (VIMEClassifier, LogisticRegressionModel, LDAModel, XGBoostModel)}
