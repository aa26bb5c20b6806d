"""How VIME's three parts should be weighed: every weighting on a grid, on every dev-suite case, chosen by its margin
over the best baseline and checked by leaving each set out of the choice.

One VIME fit per (set, budget, seed) gives the network's, the linear pair's and the booster's probabilities on the
test rows; every grid weighting (steps of 0.1, weighted geometric mean) and the previous default (arithmetic, a
third each) is scored by macro-F1 without refitting. Per budget it prints the best weightings by mean margin over
the per-set best baseline (baseline rows from devsuite_rows.jsonl), and, per left-out set, the weighting chosen on
the other seven and its margin on the left-out one: the held-out estimate of the chosen rule. The linear pair enters
with its exact log-probabilities, as the model blends it (bench/results/blend_rows.jsonl predates that and the
experts' shares: its pair was LDA and logistic regression averaged, floored like the other parts).

Run:  nice .venv/bin/python bench/blend_weights.py --rows bench/results/blend_rows.jsonl
      ... --summarise bench/results/blend_rows.jsonl          # tables from saved rows only
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devsuite  # noqa: E402
import devsuite_sets  # noqa: E402

from cytoauto_core.tools.models.vime import FINAL_PARTS, VIMEClassifier, VIMEParams, blend, geometric_mean  # noqa: E402

BASELINE_ROWS = Path(__file__).resolve().parent / "results" / "devsuite_rows.jsonl"
GRID = [(a / 10, b / 10, round(1 - a / 10 - b / 10, 1)) for a in range(11) for b in range(11 - a)]
PREVIOUS = ("arithmetic", (1 / 3, 1 / 3, 1 / 3))


def macro_f1(truth: np.ndarray, pred: np.ndarray, n_classes: int, present: np.ndarray) -> float:
    """Macro-F1 over the populations present in the truth, from one confusion matrix (sklearn's f1_score, once per
    weighting and case, would take most of the run)."""
    cm = np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp, support, called = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    f1 = np.divide(2 * tp, support + called, out=np.zeros(n_classes), where=support + called > 0)
    return float(f1[present].mean())


def score_case(ds, budget: int, seed: int) -> list[dict]:
    """Fit the default VIME once and score every weighting of its parts on the test rows."""
    lab, pool = devsuite.labelled_and_pool(ds, budget, seed)
    model = VIMEClassifier(VIMEParams(seed=seed)).fit(ds.x[lab], ds.y[lab], ds.x[pool])
    probabilities, log_probabilities = model.part_probabilities(ds.x[ds.test]), model.part_log_probabilities(ds.x[ds.test])
    parts = [probabilities[name] for name in FINAL_PARTS]
    logs = [log_probabilities[name] for name in FINAL_PARTS]  # as the model blends them
    classes = np.asarray(model.classes_)
    truth = pd.Categorical(ds.y[ds.test], categories=classes).codes.astype(np.int64)
    truth[truth < 0] = len(classes)  # a test population without labels: scored, never predicted
    present = np.unique(truth)
    rows = []
    for kind, weights in [("geometric", w) for w in GRID] + [PREVIOUS]:
        mixed = geometric_mean(logs, list(weights)) if kind == "geometric" else blend(parts, list(weights), kind)
        pred = mixed.argmax(axis=1)
        rows.append({"set": ds.name, "budget": budget, "seed": seed, "blend": kind,
                     "weights": [round(w, 3) for w in weights], "macro_f1": macro_f1(truth, pred, len(classes) + 1, present)})
    top = max(rows, key=lambda r: r["macro_f1"])
    print(json.dumps({"set": ds.name, "budget": budget, "seed": seed, "best_weights": top["weights"],
                      "best_macro_f1": round(top["macro_f1"], 4)}), flush=True)
    return rows


def tables(rows: pd.DataFrame, baselines: pd.DataFrame) -> None:
    """Best weightings per budget by mean margin over the per-set best baseline, and the leave-one-set-out check."""
    rows = rows.assign(rule=rows["blend"].str[0] + rows["weights"].apply(lambda w: " " + "/".join(f"{v:.2f}" for v in w)))
    best = (baselines[~baselines["model"].str.startswith(devsuite.SEMI_SUPERVISED)]
            .groupby(["set", "budget", "model"])["macro_f1"].mean().unstack("model").max(axis=1))
    means = rows.groupby(["budget", "rule", "set"])["macro_f1"].mean().unstack("set")
    previous = "a " + "/".join(f"{v:.2f}" for v in PREVIOUS[1])
    for budget, block in means.groupby(level="budget"):
        margin = block.droplevel("budget") - best.xs(budget, level="budget")[block.columns]
        order = margin.mean(axis=1).sort_values(ascending=False)
        shown = list(order.index[:8]) + ([previous] if previous not in order.index[:8] else [])
        print(f"\n{budget} labels per population: weightings (network/linear pair/booster; g geometric, a arithmetic) "
              f"by mean margin over the best baseline per set")
        print(pd.DataFrame({"mean_margin": margin.mean(axis=1)[shown], "worst_margin": margin.min(axis=1)[shown],
                            "mean_macro_f1": block.droplevel("budget").mean(axis=1)[shown]}).round(4).to_string())
        if margin.shape[1] < 2:
            continue
        held = []
        for left_out in margin.columns:
            chosen = margin.drop(columns=left_out).mean(axis=1).idxmax()
            held.append({"left_out": left_out, "chosen_on_the_other_sets": chosen,
                         "margin_on_left_out": round(margin.loc[chosen, left_out], 4)})
        held = pd.DataFrame(held)
        print(held.to_string(index=False))
        print(f"held-out margin: mean {held['margin_on_left_out'].mean():.4f}, worst {held['margin_on_left_out'].min():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(devsuite_sets.LOADERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(devsuite.SEEDS))
    ap.add_argument("--rows", type=Path, help="append raw rows (JSON lines) to this file")
    ap.add_argument("--summarise", type=Path, help="print tables from saved rows and exit")
    args = ap.parse_args()
    baselines = pd.read_json(BASELINE_ROWS, lines=True)
    if args.summarise:
        tables(pd.read_json(args.summarise, lines=True), baselines)
        return
    rows = devsuite.run_cases(args.sets, list(devsuite.BUDGETS), args.seeds, score_case, args.rows)
    tables(pd.DataFrame(rows), baselines)


if __name__ == "__main__":
    main()
