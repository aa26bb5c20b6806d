"""Label-budget benchmark on Levine_32dim (Levine et al. 2015, Cell 162:184–197): VIME vs logistic regression, XGBoost, LDA.

Labels are drawn per population from split=='train', the rest of train is the unlabelled pool, scores are on
split=='test'. Also reproduces the seed project's 70/30 setting and times VIME on 265k cells.
Run: nice -n 10 .venv/bin/python bench/label_budget.py [--budgets 5 10] [--seeds 0 1] [--vime rounds=2 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cytoauto_core.models.baselines import LDAModel, LogisticRegressionModel, XGBoostModel, XGBoostParams  # noqa: E402
from cytoauto_core.models.evaluation import fit_and_score  # noqa: E402
from cytoauto_core.models.vime import VIMEClassifier, VIMEParams  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "levine32" / "Levine_32dim_labeled30k_arcsinh.csv"
METRICS = ["accuracy", "macro_f1", "auroc", "log_loss", "fit_seconds"]
PUBLISHED = "seed notebook: logistic regression log loss 0.1037, XGBoost log loss 0.0621, semi-supervised accuracy 91.65%, AUROC 0.9944"


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (32 arcsinh markers, float32), labels 1–14 and the train/test split column."""
    df = pd.read_csv(DATA)
    markers = [c for c in df.columns if c not in ("label", "population", "split")]
    return df[markers].to_numpy(np.float32), df["label"].to_numpy(), df["split"].to_numpy()


def make_models(names: list[str], seed: int, vime: dict) -> dict:
    """Fresh, seeded models by name."""
    factories = {
        "VIME": lambda: VIMEClassifier(VIMEParams(**{**vime, "seed": seed})),
        "LogReg": lambda: LogisticRegressionModel(seed=seed),
        "XGBoost": lambda: XGBoostModel(XGBoostParams(seed=seed)),
        "LDA": lambda: LDAModel(seed=seed),
    }
    return {n: factories[n]() for n in names}


def draw_labels(y_train: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Indices of `budget` cells per population (all when fewer), drawn with the seed."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y_train == c), min(budget, int(np.sum(y_train == c))), replace=False)
             for c in np.unique(y_train)]
    return np.sort(np.concatenate(picks))


def summarise(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    """Mean ± sd of every metric per group."""
    df = pd.DataFrame(rows)
    out = df.groupby(keys, sort=False)[METRICS].agg(["mean", "std"])
    table = pd.DataFrame(index=out.index)
    for m in METRICS:
        digits = 2 if m == "fit_seconds" else 4
        table[m] = [f"{a:.{digits}f} ± {b:.{digits}f}" for a, b in zip(out[(m, "mean")], out[(m, "std")].fillna(0))]
    return table


def budget_curve(x, y, split, budgets, seeds, names, vime) -> pd.DataFrame:
    """Every model at every budget and seed; returns the raw rows."""
    tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    rows = []
    for budget in budgets:
        for seed in seeds:
            lab = tr[draw_labels(y[tr], budget, seed)]
            pool = np.setdiff1d(tr, lab)
            for name, model in make_models(names, seed, vime).items():
                r = fit_and_score(model, x[lab], y[lab], x[pool], x[te], y[te])
                rows.append({"budget": budget, "model": name, "seed": seed, **r})
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
    return rows


def seed_setting(x, y, names, vime) -> pd.DataFrame:
    """The seed project's setting: a stratified 70/30 split of all 30k labelled cells (seed 0); VIME sees the test cells' features unlabelled."""
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
    rows = [{"model": n, **fit_and_score(m, x[tr], y[tr], x[te], x[te], y[te])} for n, m in make_models(names, 0, vime).items()]
    return pd.DataFrame(rows).set_index("model")[METRICS].round(4)


def timing(x, y, split, vime, n_cells: int = 265_000, budget: int = 10) -> dict:
    """Train VIME (`budget` labels/population, all cells unlabelled) and apply it to n_cells tiled, jittered cells.

    Applying is timed three times (the machine is shared); the best and the median are reported.
    """
    rng = np.random.default_rng(0)
    big = x[rng.integers(0, len(x), n_cells)] + rng.normal(0, 0.05, (n_cells, x.shape[1])).astype(np.float32)
    tr = np.flatnonzero(split == "train")
    lab = tr[draw_labels(y[tr], budget, 0)]
    model = VIMEClassifier(VIMEParams(**{**vime, "seed": 0}))
    start = time.perf_counter()
    model.fit(x[lab], y[lab], big)
    fit_s = time.perf_counter() - start
    applies = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict_proba(big)
        applies.append(time.perf_counter() - start)
    return {"labels_per_population": budget, "teacher": model.params.teacher, "cells": n_cells, "train_s": round(fit_s, 2),
            "apply_s": round(applies[0], 2), "train_plus_apply_s": round(fit_s + applies[0], 2),
            "inference_cells_per_s_first": int(n_cells / applies[0]),
            "inference_cells_per_s_best_of_3": int(n_cells / min(applies)),
            "inference_cells_per_s_median_of_3": int(n_cells / float(np.median(applies)))}


def parse_value(text: str):
    """A CLI override value: JSON when it parses (numbers, lists, booleans), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 25, 100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--models", nargs="+", default=["VIME", "LogReg", "XGBoost", "LDA"])
    ap.add_argument("--vime", nargs="*", default=[], help="VIMEParams overrides, e.g. rounds=2 ensemble=3")
    ap.add_argument("--no-seed-setting", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    vime = {k: parse_value(v) for k, v in (a.split("=", 1) for a in args.vime)}
    pd.set_option("display.width", 200)
    x, y, split = load()
    print(f"Levine_32dim (Levine et al. 2015): {len(y)} cells; seeds {args.seeds}; budgets {args.budgets}; "
          f"VIMEParams {VIMEParams(**vime).to_dict()}; cpus {os.cpu_count()}", flush=True)
    rows = budget_curve(x, y, split, args.budgets, args.seeds, args.models, vime)
    print("\nLabel budget (labels per population; test split; mean ± sd over seeds)")
    print(summarise(rows, ["budget", "model"]).to_string())
    if not args.no_seed_setting:
        print(f"\nSeed project's setting (70/30 of all 30k labelled cells, seed 0); {PUBLISHED}")
        print(seed_setting(x, y, args.models, vime).to_string())
    if not args.no_timing and "VIME" in args.models:
        for budget in (10, 25):
            print(f"\nVIME on 265k cells ({budget} labels/population):", json.dumps(timing(x, y, split, vime, budget=budget)), flush=True)


if __name__ == "__main__":
    main()
