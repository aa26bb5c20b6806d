"""One call from labelled cells to a compared, saved and applied model: what the Train page and scripts run."""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.dataset import Dataset
from ..base.errors import CytoInputError
from ..base.labelled import MIN_LABELS_FOR_TRAINING
from ..io.marker_table import MarkerTable, match_markers
from ..prep.qc import reference_from
from ..prep.transforms import TransformSpec
from .models import Progress, ShouldStop, check_stop
from .models.baselines import LDAModel, LogisticRegressionModel, XGBoostModel, XGBoostParams
from .models.bundle import ModelBundle, Prediction, predict_dataset, save_bundle
from .models.evaluation import evaluate_models
from .models.novelty import DEFAULT_REJECTION, fit_novelty
from .table_annotation import feature_columns
from .table_training import TableBlendModel, table_population_ids

MODEL_NAMES = ("VIME", "Logistic regression", "XGBoost", "LDA")
# the baselines compared on held-out labels unless the user picks others; the applied model is always scored beside
# them (for VIME that costs one more fit per held-out split: evaluation.held_out_fits)
DEFAULT_COMPARISON = ("Logistic regression", "XGBoost", "LDA")


@dataclass
class TrainingRequest:
    """What to train: the models to compare (the applied one is always scored too), the one to apply to every cell,
    and their settings."""

    compare: list[str]
    apply: str = "VIME"
    vime: dict = field(default_factory=dict)
    seed: int = 0
    threshold: float = 0.5
    rejection: float = DEFAULT_REJECTION  # expected share of known cells called unknown (0: no unknown detection)
    max_unlabeled: int = 50_000
    folds: int = 3
    table: MarkerTable | None = None  # a marker table trained on beside the clicks (table_training)


@dataclass
class TrainingOutcome:
    """The comparison table, the saved bundle and the prediction for every cell."""

    scores: pd.DataFrame
    bundle_dir: Path
    bundle_hash: str
    prediction: Prediction
    n_labelled: int
    seconds: float
    weights: str = ""  # how the applied model weighs its parts (VIME), in words; empty for a single model
    provenance: list[str] = field(default_factory=list)  # with a marker table: what came from it, what from clicks


def build_model(name: str, seed: int, vime: dict | None = None):
    """An unfitted classifier by its display name."""
    if name == "VIME":
        from .models.vime import VIMEClassifier, VIMEParams

        return VIMEClassifier(VIMEParams(**{**(vime or {}), "seed": seed}))
    if name == "Logistic regression":
        return LogisticRegressionModel(seed=seed)
    if name == "XGBoost":
        return XGBoostModel(XGBoostParams(seed=seed))
    if name == "LDA":
        return LDAModel(seed=seed)
    raise ValueError(f"unknown model {name!r}")


def trainable_cells(labels: np.ndarray) -> np.ndarray:
    """Labelled cells of populations with enough labels to train on."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    keep = ids[counts >= MIN_LABELS_FOR_TRAINING]
    return np.flatnonzero(np.isin(labels, keep))


def train_and_apply(
    dataset: Dataset, x: np.ndarray, spec: TransformSpec, labels: np.ndarray, names: dict[int, str],
    request: TrainingRequest, models_dir: Path, progress: Progress, should_stop: ShouldStop,
) -> TrainingOutcome:
    """Score the applied model and the ones to compare on held-out labels, fit the applied one on all labels, save its
    bundle, label every cell."""
    started = time.perf_counter()
    cells = trainable_cells(labels)
    y = labels[cells].astype(np.int64)
    table_ids = [] if request.table is None else table_population_ids(request.table, names)
    if np.unique(np.concatenate([y, [i for i in table_ids if i >= 0]])).size < 2:
        raise CytoInputError(f"Training needs at least two populations with {MIN_LABELS_FOR_TRAINING} or more labelled "
                             f"cells each, or a marker table naming two populations of the label set.")
    unlabelled = np.flatnonzero(labels < 0)
    rng = np.random.default_rng(request.seed)
    if unlabelled.size > request.max_unlabeled:
        unlabelled = np.sort(rng.choice(unlabelled, request.max_unlabeled, replace=False))
    x_l, x_u = x[cells], x[unlabelled]

    compare = list(dict.fromkeys([m for m in request.compare if m in MODEL_NAMES] + [request.apply]))
    share = 0.6 if "VIME" in compare else 0.1  # of the progress bar: scoring VIME costs one fit per held-out split
    if np.unique(y).size >= 2:
        models = {name: build_model(name, request.seed, request.vime) for name in compare}
        scores = evaluate_models(models, x_l, y, x_u, seed=request.seed, folds=request.folds,
                                 progress=lambda f, m: progress(share * f, f"scoring {m}"), should_stop=should_stop)
    else:
        scores, share = pd.DataFrame(), 0.0

    check_stop(should_stop)
    model = build_model(request.apply, request.seed, request.vime)
    if request.table is not None:
        columns = feature_columns(request.table, match_markers(request.table, dataset).pairs, list(spec.features))
        model = TableBlendModel(request.table, columns, table_ids, model, request.seed)
    model.fit(x_l, y, x_u, progress=lambda f, m: progress(share + (0.9 - share) * f, f"final {request.apply}: {m}"),
              should_stop=should_stop)
    x_known, y_known = x_l, y
    if request.table is not None:  # unknown cells are those unlike the populations as the table and clicks named them
        x_known = np.concatenate([x_l, x_u])
        y_known = np.concatenate([y, model.classes_[model.predict_proba(x_u).argmax(axis=1)]])
    bundle = ModelBundle(
        classifier=model, spec=spec, class_ids=[int(c) for c in model.classes_],
        class_names=[names[int(c)] for c in model.classes_], name=f"{request.apply} on {dataset.name}",
        params={**model.params_dict(), **reference_from(x, spec.features, dataset.sample_ids).to_params()},
        metrics={k: v for k, v in scores.to_dict(orient="index").items()},
        seed=request.seed, novelty=fit_novelty(x_known, y_known, request.rejection, request.seed),
    )
    progress(0.92, "saving the model bundle")
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=".new-"))
    bundle_hash = save_bundle(bundle, str(tmp))
    final = models_dir / bundle_hash[:16]
    if final.exists():
        shutil.rmtree(tmp)
    else:
        tmp.rename(final)
    prediction = predict_dataset(bundle, dataset.events, dataset.channel_names, dataset.spillover, request.threshold,
                                 progress=lambda f, m: progress(0.95 + 0.05 * f, m), should_stop=should_stop,
                                 rejection=request.rejection)
    return TrainingOutcome(scores, final, bundle_hash, prediction, int(cells.size), time.perf_counter() - started,
                           getattr(model, "weights_text", lambda: "")(), getattr(model, "provenance", []))
