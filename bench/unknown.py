"""Benchmark of unknown detection: populations nobody named must come out "unknown", named ones keep their cells.

Per devsuite set and seed, 2 populations (3 where a set has 20 or more) are hidden: never labelled, still in the
unlabelled pool and the test rows. The others get 10 labels per population (train rows); the pool is every other
train row and unscorable cell (at most 50,000, seeded), as in bench/devsuite.py. Reported on the test rows: the share
of hidden-population cells called unknown, the share of known-population cells called unknown, and macro-F1 over the
known populations with and without the rejection (a rejected known cell counts as wrong), and the AUROC of each
method's score for telling hidden from known cells (whatever the level). Methods:
- "<model> + envelopes": the app's unknown detection (cytoauto_core.tools.models.novelty) beside the model the app applies;
- "LDA + χ² distance": the classic reject option — LDA, and a cell is unknown when its squared Mahalanobis distance to
  its predicted population (LDA's pooled covariance) exceeds the χ²(markers) quantile at 1 − the level.
hipc_rare_activated is left out: it has two populations, and hiding one leaves nothing to classify.

Run:  OMP_NUM_THREADS=2 nice .venv/bin/python bench/unknown.py --rows bench/results/unknown_rows.jsonl   # ~20 min
      ... --models LDA --sets levine32 hipc_tcell --seeds 0                                         # quick look
      ... --summarise bench/results/unknown_rows.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2
from sklearn.metrics import f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devsuite_sets  # noqa: E402
from devsuite import MAX_POOL, draw_labels, make_model, run_cases  # noqa: E402
from devsuite_sets import DevSet  # noqa: E402

from cytoauto_core.tools.models.novelty import DEFAULT_REJECTION, fit_novelty, pooled_covariance  # noqa: E402

SETS = [s for s in devsuite_sets.LOADERS if s != "hipc_rare_activated"]
SEEDS = (0, 1, 2)
BUDGET = 10
MODELS = ("VIME", "LDA")
UNKNOWN = "__unknown__"


def hidden_populations(ds: DevSet, seed: int) -> list[str]:
    """The populations hidden in this case: 2 (3 with 20 or more populations), drawn with the seed."""
    populations = np.unique(ds.y[ds.test])
    rng = np.random.default_rng(1000 + seed)
    return sorted(rng.choice(populations, 3 if populations.size >= 20 else 2, replace=False).tolist())


def case_rows(ds: DevSet, seed: int, models: list[str], level: float) -> list[dict]:
    """Every method on one (set, seed): hidden and known shares called unknown, known macro-F1 with and without."""
    hidden = hidden_populations(ds, seed)
    lab = draw_labels(ds.y, ds.train[~np.isin(ds.y[ds.train], hidden)], BUDGET, seed)
    pool = np.setdiff1d(np.concatenate([ds.train, ds.pool_extra]), lab)
    if pool.size > MAX_POOL:
        pool = np.sort(np.random.default_rng(seed).choice(pool, MAX_POOL, replace=False))
    x_test, y_test = ds.x[ds.test], ds.y[ds.test]
    is_hidden = np.isin(y_test, hidden)
    known = np.unique(ds.y[lab])

    def row(method: str, pred: np.ndarray, score: np.ndarray, unknown: np.ndarray, seconds: float) -> dict:
        f1 = f1_score(y_test[~is_hidden], pred[~is_hidden], labels=known, average="macro", zero_division=0.0)
        f1_rejecting = f1_score(y_test[~is_hidden], np.where(unknown, UNKNOWN, pred)[~is_hidden], labels=known,
                                average="macro", zero_division=0.0)
        out = {"set": ds.name, "seed": seed, "method": method, "hidden": hidden, "level": level,
               "hidden_unknown": float(unknown[is_hidden].mean()), "known_unknown": float(unknown[~is_hidden].mean()),
               "auroc": float(roc_auc_score(is_hidden, score)),
               "known_f1": float(f1), "known_f1_rejecting": float(f1_rejecting), "seconds": seconds}
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)
        return out

    rows = []
    for name in models:
        model = make_model(name, seed, {})
        model.fit(ds.x[lab], ds.y[lab], ds.x[pool])
        pred = np.asarray(model.classes_)[model.predict_proba(x_test).argmax(axis=1)]
        start = time.perf_counter()
        novelty = fit_novelty(ds.x[lab], ds.y[lab], level, seed)
        score = novelty.novelty(x_test)
        rows.append(row(f"{name} + envelopes", pred, score, novelty.unknown(score), time.perf_counter() - start))
        if name == "LDA":
            start = time.perf_counter()
            means, pooled = pooled_covariance(ds.x[lab].astype(np.float64), ds.y[lab], known)
            centred = x_test - means[np.searchsorted(known, pred)]
            d2 = np.einsum("ij,ij->i", centred @ np.linalg.inv(pooled), centred)
            rows.append(row("LDA + χ² distance", pred, d2, d2 > chi2.ppf(1 - level, ds.x.shape[1]),
                            time.perf_counter() - start))
    return rows


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Per set and method (means over seeds), then the mean over sets: shares called unknown, known macro-F1 without
    and with rejection, and its loss."""
    df = df.assign(f1_loss=df["known_f1"] - df["known_f1_rejecting"])
    columns = ["hidden_unknown", "known_unknown", "auroc", "known_f1", "known_f1_rejecting", "f1_loss"]
    per_set = df.groupby(["set", "method"])[columns].mean()
    overall = df.groupby(["set", "method"])[columns].mean().groupby("method").mean()
    overall.index = pd.MultiIndex.from_product([["mean over sets"], overall.index], names=["set", "method"])
    return pd.concat([per_set, overall]).round(3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=SETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="bench/devsuite.py model names")
    ap.add_argument("--level", type=float, default=DEFAULT_REJECTION, help="share of known cells allowed to be unknown")
    ap.add_argument("--rows", type=Path, help="append raw rows (JSON lines) to this file")
    ap.add_argument("--summarise", type=Path, nargs="+", help="print the table from saved rows and exit")
    args = ap.parse_args()
    pd.set_option("display.width", 250)
    if args.summarise:
        df = pd.concat([pd.read_json(p, lines=True) for p in args.summarise])
        print(table(df).to_string())
        return
    print(f"unknown cells: sets {args.sets}; seeds {args.seeds}; models {args.models}; level {args.level}; "
          f"{BUDGET} labels per known population", flush=True)
    rows = run_cases(args.sets, [BUDGET], args.seeds,
                     lambda ds, budget, seed: case_rows(ds, seed, args.models, args.level), args.rows)
    print(f"\nUnknown cells at level {args.level} (means over seeds {args.seeds})")
    print(table(pd.DataFrame(rows)).to_string())


if __name__ == "__main__":
    main()
