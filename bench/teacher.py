"""Teacher ablation on Levine_32dim: how VIME's teacher booster is built, scored alone on the test split.

Each row changes one step of the `cascade` teacher (first guess → confident pseudo-labels → booster → valley gates)
and reports accuracy, macro-F1 and how fast the booster applies to 265k cells. Seeds draw the labels and seed every model.
Run: nice -n 5 .venv/bin/python bench/teacher.py [--budget 10] [--seeds 0 1 2 3 4]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.label_budget import draw_labels, load  # noqa: E402
from cytoauto_core.models.baselines import XGBoostParams  # noqa: E402
from cytoauto_core.models.vime import (  # noqa: E402
    VIMEClassifier, VIMEParams, booster_probs, fit_booster, product_of_experts, select_pseudo_labels,
)
from cytoauto_core.transforms import Scaler  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One way to build the teacher booster."""

    name: str
    first_guess: str  # 'lda' or 'lda*xgboost' (product of the prior-shifted posteriors)
    fraction: float
    rounds: int
    eta: float
    vector_leaves: bool
    valleys: bool = False  # settle hesitant pairs at density valleys and train the booster again


VARIANTS = [
    Variant("LDA → one tree per population, 200 rounds", "lda", 0.5, 200, 0.1, False),
    Variant("LDA → vector leaves, 200 rounds", "lda", 0.5, 200, 0.1, True),
    Variant("LDA → vector leaves, 100 rounds", "lda", 0.5, 100, 0.2, True),
    Variant("LDA × XGBoost (50 %) → vector leaves, 100 rounds", "lda*xgboost", 0.5, 100, 0.2, True),
    Variant("LDA × XGBoost (30 %) → vector leaves, 100 rounds", "lda*xgboost", 0.3, 100, 0.2, True),
    Variant("… then valley gates, booster trained again (default)", "lda*xgboost", 0.3, 100, 0.2, True, True),
]


def run_seed(x, y, split, budget: int, seed: int, big: np.ndarray) -> list[dict]:
    """Every variant's booster for one label draw: test scores and cells/s on `big`."""
    tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    lab = tr[draw_labels(y[tr], budget, seed)]
    pool = np.setdiff1d(tr, lab)
    model = VIMEClassifier(VIMEParams(seed=seed))
    model.classes_, yl = np.unique(y[lab], return_inverse=True)
    n = len(model.classes_)
    model.scaler = Scaler("standard").fit(np.concatenate([x[lab], x[pool]]), seed=seed)
    s_l, s_u, s_t, s_big = (model.scaler.transform(a) for a in (x[lab], x[pool], x[te], big))
    p = model.params
    first = {"lda": model.lda_guess(s_l, yl, s_u)[1]}
    xgb_first = fit_booster(s_l, yl, n, XGBoostParams(n_jobs=p.threads, seed=seed))
    first["lda*xgboost"] = product_of_experts(first["lda"], model._shift(booster_probs(xgb_first, s_u, n)))
    rows = []
    for v in VARIANTS:
        params = replace(model.teacher_booster_params(), n_estimators=v.rounds, learning_rate=v.eta)
        idx, py = select_pseudo_labels(first[v.first_guess], p.cascade_threshold, v.fraction, p.cascade_cap)
        s_core, y_core = np.concatenate([s_l, s_u[idx]]), np.concatenate([yl, py])
        booster = fit_booster(s_core, y_core, n, params, v.vector_leaves)
        if v.valleys:
            _, refit = model.refit_at_valleys(s_core, y_core, idx, s_u, model._shift(booster_probs(booster, s_u, n)))
            booster = booster if refit is None else refit
        pred = model.classes_[booster_probs(booster, s_t, n).argmax(axis=1)]
        start = time.perf_counter()
        booster_probs(booster, s_big, n)
        rows.append({"teacher booster": v.name, "seed": seed, "accuracy": accuracy_score(y[te], pred),
                     "macro_f1": f1_score(y[te], pred, average="macro"),
                     "cells_per_s": len(big) / (time.perf_counter() - start)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    x, y, split = load()
    rng = np.random.default_rng(0)
    big = x[rng.integers(0, len(x), 265_000)] + rng.normal(0, 0.05, (265_000, x.shape[1])).astype(np.float32)
    rows = [r for seed in args.seeds for r in run_seed(x, y, split, args.budget, seed, big)]
    table = pd.DataFrame(rows).groupby("teacher booster", sort=False).agg(
        accuracy=("accuracy", "mean"), macro_f1=("macro_f1", "mean"), min_macro_f1=("macro_f1", "min"),
        cells_per_s=("cells_per_s", "median"))
    pd.set_option("display.width", 200)
    print(f"Teacher booster alone, {args.budget} labels per population, seeds {args.seeds}; test split (15,000 cells);"
          f" cells/s = median over seeds of one apply to 265,000 cells, 2 threads")
    print(table.round({"accuracy": 4, "macro_f1": 4, "min_macro_f1": 4, "cells_per_s": 0}).to_string())


if __name__ == "__main__":
    main()
