"""Benchmark of "Label these next": a simulated user adds labels from the suggestions or at random, round by round.

Per devsuite set and seed: start with 3 labels per population (train rows), then 5 rounds; each round adds
5 × n_populations labels, either the cells cytoauto_core.tools.suggestions proposes (among the scorable, unlabelled train
rows; the user answers every cell with its true label) or 5 random train rows per population. After every round the
model is refitted and scored (macro-F1 on the test rows). Reference: 25 random labels per population. Also reported:
how pure the suggested groups are (share of a group's cells in its most common true population), i.e. how often
a one-click answer for the whole group would be right.

Run:  OMP_NUM_THREADS=2 nice .venv/bin/python bench/suggestions.py --model LogReg        # ~5 min, every set
      OMP_NUM_THREADS=2 nice .venv/bin/python bench/suggestions.py --model VIME --random-rounds 5 \
          --rows bench/results/suggest_rows.jsonl                                    # the app's model, ~30 min
      ... --model VIME --arms random --random-rounds 1 2 3 4 --rows ...              # the random curve's middle
      ... --summarise bench/results/suggest_rows.jsonl                               # tables from saved rows
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devsuite_sets  # noqa: E402
from devsuite import draw_labels, labelled_and_pool, make_model  # noqa: E402
from devsuite_sets import DevSet  # noqa: E402

from cytoauto_core.base.labelled import MIN_LABELS_FOR_TRAINING  # noqa: E402
from cytoauto_core.tools.suggestions import candidate_rows, suggest_cells  # noqa: E402

START, PER_ROUND, ROUNDS, REFERENCE = 3, 5, 5, 25
SEEDS = (0, 1, 2)


def fit_score(ds: DevSet, lab: np.ndarray, pool: np.ndarray, model_name: str, seed: int):
    """Fit on the labelled rows (pool = unlabelled rows), return (model, macro-F1 on the test rows)."""
    model = make_model(model_name, seed, {})
    model.fit(ds.x[lab], ds.y[lab], ds.x[np.setdiff1d(pool, lab)])
    y_test = ds.y[ds.test]
    pred = np.asarray(model.classes_)[model.predict_proba(ds.x[ds.test]).argmax(axis=1)]
    return model, float(f1_score(y_test, pred, labels=np.unique(y_test), average="macro", zero_division=0.0))


def suggested_round(ds: DevSet, model, lab: np.ndarray, n_new: int, seed: int, group_size: int
                    ) -> tuple[np.ndarray, float]:
    """The rows the suggestions add (answered with their true labels) and the mean purity of their groups."""
    cands = candidate_rows(np.setdiff1d(ds.train, lab), seed=seed)
    proba = model.predict_proba(ds.x[cands])
    s = suggest_cells(ds.x, cands, proba, lab, class_ids=model.classes_, n_cells=n_new, group_size=group_size,
                      seed=seed, source="the benchmark model")
    purity = [pd.Series(ds.y[s.members(g)]).value_counts(normalize=True).iloc[0] for g in range(s.n_groups)]
    return s.cells, float(np.mean(purity))


ARMS = ("suggested", "random", "reference")


def run_case(ds: DevSet, seed: int, model_name: str, group_size: int, random_rounds: set[int],
             arms: tuple[str, ...] = ARMS) -> list[dict]:
    """The arms asked for one (set, seed): suggested and random over the rounds (both from the same round-0 fit),
    and the random-25 reference. The random arm draws its labels every round but is fitted and scored only after
    `random_rounds` (fewer fits for slow models; its draws, and so its scores, do not depend on which are scored)."""
    start, pool = labelled_and_pool(ds, START, seed)
    n_pop = np.unique(ds.y[ds.train]).size
    rows = []

    def record(arm: str, round_: int, lab: np.ndarray, f1: float, **extra) -> None:
        rows.append({"set": ds.name, "seed": seed, "model": model_name, "group_size": group_size, "arm": arm,
                     "round": round_, "labels": int(len(lab)), "labels_per_population": round(len(lab) / n_pop, 2),
                     "macro_f1": f1, **extra})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)

    curves = [arm for arm in ("suggested", "random") if arm in arms]
    model0, f1_0 = fit_score(ds, start, pool, model_name, seed) if curves else (None, np.nan)
    for arm in curves:
        lab, model = start, model0
        record(arm, 0, lab, f1_0)
        for r in range(1, ROUNDS + 1):
            started = time.perf_counter()
            extra = {}
            if arm == "suggested":
                new, extra["group_purity"] = suggested_round(ds, model, lab, PER_ROUND * n_pop, seed * 100 + r,
                                                              group_size)
            else:
                new = draw_labels(ds.y, np.setdiff1d(ds.train, lab), PER_ROUND, seed * 100 + r)
            extra["suggest_seconds"] = time.perf_counter() - started
            lab = np.union1d(lab, new)
            if arm == "suggested" or r in random_rounds:
                model, f1 = fit_score(ds, lab, pool, model_name, seed)
                record(arm, r, lab, f1, **extra)
    if "reference" in arms:
        reference = draw_labels(ds.y, ds.train, REFERENCE, seed)
        record(f"random-{REFERENCE}", 0, reference, fit_score(ds, reference, pool, model_name, seed)[1])
    return rows


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows: set (and the mean over sets); columns: suggested and random after rounds 0..5, random-25, the margins
    of suggested round 5 over random-25 and over random round 5 (as many labels), and the suggested groups' mean
    purity. Means over seeds."""
    means = df.groupby(["set", "arm", "round"])["macro_f1"].mean()
    out = pd.DataFrame(index=pd.Index(df["set"].unique(), name="set"))
    for arm, short in (("suggested", "sugg"), ("random", "rand")):
        for r in range(ROUNDS + 1):
            out[f"{short}{r}"] = [means.get((s, arm, r), np.nan) for s in out.index]
    out[f"rand-{REFERENCE}"] = [means.get((s, f"random-{REFERENCE}", 0), np.nan) for s in out.index]
    out[f"sugg{ROUNDS}-rand{REFERENCE}"] = out[f"sugg{ROUNDS}"] - out[f"rand-{REFERENCE}"]
    out[f"sugg{ROUNDS}-rand{ROUNDS}"] = out[f"sugg{ROUNDS}"] - out[f"rand{ROUNDS}"]
    if "group_purity" in df:
        out["purity"] = df[df["arm"] == "suggested"].groupby("set")["group_purity"].mean().reindex(out.index)
    out.loc["mean over sets"] = out.mean()
    return out.round(3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(devsuite_sets.LOADERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--model", default="LogReg", help="a bench/devsuite.py model name: LogReg, LDA, VIME, ...")
    ap.add_argument("--group-size", type=int, default=MIN_LABELS_FOR_TRAINING, help="cells per suggested group")
    ap.add_argument("--random-rounds", type=int, nargs="+", default=list(range(1, ROUNDS + 1)),
                    help="rounds after which the random arm is fitted and scored (e.g. 5 alone for VIME)")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="what to run (default: all)")
    ap.add_argument("--rows", type=Path, help="append raw rows (JSON lines) to this file")
    ap.add_argument("--summarise", type=Path, nargs="+", help="print the table from saved rows and exit")
    args = ap.parse_args()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    if args.summarise:
        df = pd.concat([pd.read_json(p, lines=True) for p in args.summarise])
        for model, block in df.groupby("model"):
            print(f"\nMacro-F1 (mean over seeds {sorted(int(s) for s in block['seed'].unique())}), model {model}")
            print(table(block).to_string())
        return
    print(f"suggestions: sets {args.sets}; seeds {args.seeds}; model {args.model}; group size {args.group_size}",
          flush=True)
    rows = []
    for name in args.sets:
        ds = devsuite_sets.load(name)
        print(ds.describe(), flush=True)
        for seed in args.seeds:
            case = run_case(ds, seed, args.model, args.group_size, set(args.random_rounds), tuple(args.arms))
            rows += case
            if args.rows:
                with args.rows.open("a") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in case)
    print(f"\nMacro-F1 (mean over seeds {args.seeds}), model {args.model}")
    print(table(pd.DataFrame(rows)).to_string())


if __name__ == "__main__":
    main()
