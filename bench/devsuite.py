"""Development benchmark: every model on every devsuite set at 5, 10 and 25 labels per population, several seeds.

The one place a method change is judged. Labels are drawn per population from the set's train rows; the rest of
them and every unscorable cell (ungated, ambiguous) are the unlabelled pool; scores are on the test rows.
Macro-F1 counts every population present in the test rows equally (small populations matter).

Run:  nice .venv/bin/python bench/devsuite.py                      # full: 8 sets × 3 budgets × 3 seeds
      nice .venv/bin/python bench/devsuite.py --fast               # iteration: 2 sets, 1 seed
      ... --models VIME LDA --vime rounds=2 --rows out.jsonl       # VIMEParams overrides; raw rows appended
      ... --models "VIME network alone" "VIME experts alone"       # ablations (VIME_VARIANTS)
      ... --summarise out.jsonl                                    # tables from saved rows only
      ... --speed                                                  # fit and train + apply timings
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
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devsuite_sets  # noqa: E402
from devsuite_sets import DevSet  # noqa: E402

from cytoauto_core.tools.recommendation import recommend_model  # noqa: E402
from cytoauto_core.tools.training import build_model  # noqa: E402

BUDGETS = (5, 10, 25)
SEEDS = (0, 1, 2)
MAX_POOL = 50_000
MODELS = ("VIME", "LogReg", "XGBoost", "LDA", "kNN", "LabelSpreading")
SEMI_SUPERVISED = "VIME"  # every model whose name starts with this is a candidate, the rest are baselines
APP_NAMES = {"VIME": "VIME", "Logistic regression": "LogReg", "XGBoost": "XGBoost", "LDA": "LDA"}  # app → bench
BENCH_TO_APP = {bench: app for app, bench in APP_NAMES.items()}
VIME_VARIANTS = {  # ablations: what each part of the default model provides
    "VIME": {},
    "VIME network alone": {"final_weights": [1.0, 0.0, 0.0]},
    "VIME experts alone": {"final_weights": [0.0, 0.2, 0.7]},
}


class SklearnModel:
    """A scikit-learn estimator behind the project's fit(x_l, y, x_u)/predict_proba contract (benchmark-only baselines).

    LabelSpreading is fitted transductively on labelled + pool cells (pool capped at 20,000, seeded) and predicts new
    cells from their neighbours among them; kNN uses the labelled cells only."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind, self.seed = kind, seed

    def fit(self, x_l, y, x_u=None, progress=None, should_stop=None):
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.preprocessing import StandardScaler
        from sklearn.semi_supervised import LabelSpreading

        self.classes_, yi = np.unique(y, return_inverse=True)
        self.scaler = StandardScaler().fit(np.concatenate([x_l, x_u]) if x_u is not None and len(x_u) else x_l)
        if self.kind == "kNN":
            self.est = KNeighborsClassifier(n_neighbors=min(5, len(y)), weights="distance").fit(self.scaler.transform(x_l), yi)
            return self
        rng = np.random.default_rng(self.seed)
        pool = x_u if len(x_u) <= 20_000 else x_u[rng.choice(len(x_u), 20_000, replace=False)]
        x = self.scaler.transform(np.concatenate([x_l, pool]))
        self.est = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2, max_iter=30, n_jobs=2)
        self.est.fit(x, np.concatenate([yi, np.full(len(pool), -1)]))
        return self

    def predict_proba(self, x):
        p = self.est.predict_proba(self.scaler.transform(x))
        return np.nan_to_num(p, nan=1.0 / p.shape[1]).astype(np.float32)


def make_model(name: str, seed: int, vime: dict):
    """A fresh, seeded model by benchmark name: the app's own (cytoauto_core.tools.training.build_model), VIME variants with
    their overrides, or a scikit-learn baseline."""
    if name in VIME_VARIANTS:
        return build_model("VIME", seed, {**vime, **VIME_VARIANTS[name]})
    if name in BENCH_TO_APP:
        return build_model(BENCH_TO_APP[name], seed)
    return SklearnModel(name, seed)


def draw_labels(y: np.ndarray, rows: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """`budget` rows per population among `rows` (all of them when fewer), drawn with the seed."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y[rows]):
        members = rows[y[rows] == c]
        picks.append(rng.choice(members, min(budget, members.size), replace=False))
    return np.sort(np.concatenate(picks))


def labelled_and_pool(ds: DevSet, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The labelled rows of one case and its unlabelled pool (the other train rows and every unscorable cell, at most
    MAX_POOL of them, seeded)."""
    lab = draw_labels(ds.y, ds.train, budget, seed)
    pool = np.setdiff1d(np.concatenate([ds.train, ds.pool_extra]), lab)
    if pool.size > MAX_POOL:
        pool = np.sort(np.random.default_rng(seed).choice(pool, MAX_POOL, replace=False))
    return lab, pool


def run_cases(sets: list[str], budgets: list[int], seeds: list[int], run, rows_path: Path | None) -> list[dict]:
    """Call run(ds, budget, seed) -> rows for every case, set by set; each case's rows are appended to rows_path (JSON
    lines) as soon as they exist, so an interrupted run keeps what it measured."""
    rows = []
    for name in sets:
        ds = devsuite_sets.load(name)
        print(ds.describe(), flush=True)
        for budget in budgets:
            for seed in seeds:
                case = run(ds, budget, seed)
                rows += case
                if rows_path:
                    with rows_path.open("a") as fh:
                        fh.writelines(json.dumps(r) + "\n" for r in case)
    return rows


def run_case(ds: DevSet, budget: int, seed: int, names: list[str], vime: dict) -> list[dict]:
    """Every model on one (set, budget, seed): rows with macro-F1, accuracy, per-population F1 and fit seconds."""
    lab, pool = labelled_and_pool(ds, budget, seed)
    y_test = ds.y[ds.test]
    populations = np.unique(y_test)
    rows = []
    for name in names:
        model = make_model(name, seed, vime)
        start = time.perf_counter()
        model.fit(ds.x[lab], ds.y[lab], ds.x[pool])
        seconds = time.perf_counter() - start
        pred = np.asarray(model.classes_)[model.predict_proba(ds.x[ds.test]).argmax(axis=1)]
        per_class = f1_score(y_test, pred, labels=populations, average=None, zero_division=0.0)
        rows.append({"set": ds.name, "budget": budget, "seed": seed, "model": name,
                     "macro_f1": float(per_class.mean()), "accuracy": float(accuracy_score(y_test, pred)),
                     "missed_populations": int(np.sum(~np.isin(populations, pred))),
                     "f1_by_population": dict(zip(populations.tolist(), np.round(per_class, 4).tolist())),
                     "fit_seconds": seconds})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()
                          if k != "f1_by_population"}), flush=True)
    return rows


def per_set_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean macro-F1 (± sd over seeds) per set, budget and model."""
    g = df.groupby(["set", "budget", "model"], sort=False)["macro_f1"].agg(["mean", "std"])
    return g.apply(lambda r: f"{r['mean']:.3f} ± {0 if np.isnan(r['std']) else r['std']:.3f}", axis=1).unstack("model")


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per budget and model: mean macro-F1 over sets, mean rank, margin over the best baseline other than itself (mean
    and worst set), populations never predicted and fit seconds. Ranks and margins use per-set means over seeds;
    every model whose name starts with VIME is a candidate, the others are baselines."""
    means = df.groupby(["budget", "set", "model"])["macro_f1"].mean().unstack("model")
    seconds = df.groupby(["budget", "model"])["fit_seconds"].mean()
    missed = df.groupby(["budget", "model"])["missed_populations"].mean()
    baselines = [m for m in means.columns if not m.startswith(SEMI_SUPERVISED)]
    rows = []
    for budget, block in means.groupby(level="budget"):
        ranks = block.rank(axis=1, ascending=False).mean()
        for model in block.columns:
            margin = block[model] - block[[b for b in baselines if b != model]].max(axis=1)
            rows.append({"budget": budget, "model": model, "mean_macro_f1": block[model].mean(),
                         "mean_rank": ranks[model], "margin_mean": margin.mean(), "margin_worst": margin.min(),
                         "missed_pops_per_run": missed[(budget, model)], "fit_s": seconds[(budget, model)]})
    return pd.DataFrame(rows).set_index(["budget", "model"]).round(4)


def recommendation_rate(df: pd.DataFrame) -> pd.DataFrame:
    """How often the Train page's recommended model is within 0.01 macro-F1 of the best model of a (set, budget, seed)
    case, per budget and overall; the best is taken over every model in the rows, baselines the app lacks included."""
    rows = []
    for (name, budget, seed), case in df.groupby(["set", "budget", "seed"]):
        scores = case.set_index("model")["macro_f1"]
        if not set(APP_NAMES.values()) <= set(scores.index):
            continue
        chosen = APP_NAMES[recommend_model([budget]).model]
        rows.append({"budget": budget, "within_0.01": scores[chosen] >= scores.max() - 0.01,
                     "shortfall": scores.max() - scores[chosen]})
    cases = pd.DataFrame(rows)
    table = cases.groupby("budget").agg(cases=("within_0.01", "size"), within_001=("within_0.01", "mean"),
                                        mean_shortfall=("shortfall", "mean"), worst_shortfall=("shortfall", "max"))
    table.loc["all"] = [len(cases), cases["within_0.01"].mean(), cases["shortfall"].mean(), cases["shortfall"].max()]
    return table.round(4)


def print_tables(df: pd.DataFrame) -> None:
    """Per-set tables, the summary and the recommendation rate."""
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    print("\nMacro-F1 per set (mean ± sd over seeds; test rows)")
    print(per_set_table(df).to_string())
    print("\nSummary per budget (per-set means over seeds; margin = macro-F1 minus the best other baseline's on that set)")
    print(summary(df).to_string())
    if set(APP_NAMES.values()) <= set(df["model"]):
        print("\nRecommended model (cytoauto_core.tools.recommendation) within 0.01 macro-F1 of the best model, per case")
        print(recommendation_rate(df).to_string())


def synthetic_panel(n_cells: int, n_markers: int, n_populations: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian populations of very different sizes (largest ~100× the smallest) with random means and spreads."""
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(n_populations, 0.7)) * 0.97 + 0.03 / n_populations
    y = rng.choice(n_populations, n_cells, p=sizes / sizes.sum())
    means = rng.normal(0, 2.0, (n_populations, n_markers))
    spread = rng.uniform(0.3, 1.0, (n_populations, n_markers))
    x = means[y] + rng.normal(0, 1, (n_cells, n_markers)) * spread[y]
    return x.astype(np.float32), y


def speed(vime: dict, budget: int = 10) -> None:
    """Fit seconds on 50,000 cells × 40 markers × 30 populations, and train + apply on 265,000 cells (Levine_32dim
    tiled with jitter), at `budget` labels per population, seed 0."""
    x, y = synthetic_panel(50_000, 40, 30)
    lab = draw_labels(y, np.arange(len(y)), budget, 0)
    rest = np.setdiff1d(np.arange(len(y)), lab)
    start = time.perf_counter()
    build_model("VIME", 0, vime).fit(x[lab], y[lab], x[rest])
    print(json.dumps({"cells": len(y), "markers": 40, "populations": 30, "labels_per_population": budget,
                      "fit_s": round(time.perf_counter() - start, 2)}), flush=True)
    ds = devsuite_sets.levine32()
    rng = np.random.default_rng(0)
    big = ds.x[rng.integers(0, len(ds.x), 265_000)] + rng.normal(0, 0.05, (265_000, ds.x.shape[1])).astype(np.float32)
    lab = draw_labels(ds.y, ds.train, budget, 0)
    start = time.perf_counter()
    model = build_model("VIME", 0, vime).fit(ds.x[lab], ds.y[lab], big)
    fit_s = time.perf_counter() - start
    applies = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict_proba(big)
        applies.append(time.perf_counter() - start)
    print(json.dumps({"cells": len(big), "markers": ds.x.shape[1], "populations": len(model.classes_),
                      "labels_per_population": budget, "train_s": round(fit_s, 2), "apply_s": round(applies[0], 2),
                      "train_plus_apply_s": round(fit_s + applies[0], 2),
                      "inference_cells_per_s_median_of_3": int(len(big) / float(np.median(applies)))}), flush=True)


def parse_value(text: str):
    """A CLI override value: JSON when it parses (numbers, lists, booleans), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(devsuite_sets.LOADERS))
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--vime", nargs="*", default=[], help="VIMEParams overrides, e.g. rounds=2 pseudo_threshold=0.9")
    ap.add_argument("--fast", action="store_true", help=f"sets {', '.join(devsuite_sets.FAST)}, seed 0")
    ap.add_argument("--rows", type=Path, help="append raw rows (JSON lines) to this file")
    ap.add_argument("--summarise", type=Path, nargs="+", help="print tables from saved rows and exit")
    ap.add_argument("--speed", action="store_true", help="only the fit and train + apply timings")
    args = ap.parse_args()
    if args.summarise:
        print_tables(pd.concat([pd.read_json(p, lines=True) for p in args.summarise]))
        return
    if args.fast:
        args.sets, args.seeds = list(devsuite_sets.FAST), [0]
    vime = {k: parse_value(v) for k, v in (a.split("=", 1) for a in args.vime)}
    if args.speed:
        speed(vime)
        return
    print(f"devsuite: sets {args.sets}; budgets {args.budgets}; seeds {args.seeds}; models {args.models}; "
          f"VIMEParams overrides {vime}; cpus {os.cpu_count()}", flush=True)
    rows = run_cases(args.sets, args.budgets, args.seeds,
                     lambda ds, budget, seed: run_case(ds, budget, seed, args.models, vime), args.rows)
    print_tables(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
