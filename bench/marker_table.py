"""Marker-table benchmark: a population × marker table alone, the table with 5 and 10 clicked cells per population,
clicks alone (today's VIME) at 5 and 10, and scyan with the same table, on every dev-suite set with a table.

Tables: bench/marker_tables/<set>.csv (their sources in that folder's README) and Levine_32dim's published table in
../shared/data/levine32/knowledge_table/. Labels are drawn as in bench/devsuite.py (same seeds and pools); scores are
macro-F1 over the test rows' populations (an unassigned call counts as wrong). Every model sees the same cells: the
labelled ones and the unlabelled pool; the table alone sees the pool and the labelled cells without their labels.
--flip also runs the table with one marker of one row flipped (the largest population's first +1 marker), plus
5 clicks: whether the contradiction check flags it, and the macro-F1 of the other populations beside the true table.
scyan runs in its own benchmark-only virtualenv (bench/scyan_setup.md), one thread, when that exists.

Run:  nice .venv/bin/python bench/marker_table.py [--sets levine32 ...] [--seeds 0 1 2] [--flip] [--scyan]
      ... --rows out.jsonl            # raw rows appended as they are measured
      ... --summarise out.jsonl       # tables from saved rows only
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devsuite_sets  # noqa: E402
from devsuite import labelled_and_pool  # noqa: E402

from cytoauto_core.base.labelled import name_key  # noqa: E402
from cytoauto_core.io.marker_table import MarkerTable, channel_key, read_marker_table  # noqa: E402
from cytoauto_core.tools.table_training import TableBlendModel  # noqa: E402
from cytoauto_core.tools.training import build_model  # noqa: E402

HERE = Path(__file__).resolve().parent
TABLES = {"levine32": devsuite_sets.SHARED / "levine32" / "knowledge_table" / "levine32_expected_expression.csv",
          **{n: HERE / "marker_tables" / f"{n}.csv" for n in ("hipc_tcell", "flowsom_bal", "covid_flow", "himc_cytof")}}
MASS = {"levine32", "himc_cytof"}
SCYAN = HERE / ".scyan-venv" / "bin" / "python"


def case_inputs(name: str) -> tuple:
    """The set, its table, each table marker's feature column and the label ids (sorted population names)."""
    ds = devsuite_sets.load(name)
    path = TABLES[name]
    table = read_marker_table(path.read_bytes(), path.name)
    keys = {channel_key(m): j for j, m in enumerate(ds.markers)}
    columns = [keys.get(channel_key(m), -1) for m in table.markers]
    populations = sorted(set(ds.y[ds.y != devsuite_sets.UNSCORABLE]))
    return ds, table, columns, populations


def macro_f1(ds, populations: list[str], classes: np.ndarray, probs: np.ndarray,
             only: list[str] | None = None) -> float:
    """Macro-F1 on the test rows over their populations (or `only` of them)."""
    names = np.array(populations + ["unassigned"], dtype=object)
    pred = names[np.asarray(classes)[probs.argmax(axis=1)]]
    y = ds.y[ds.test]
    return float(f1_score(y, pred, labels=only or sorted(set(y)), average="macro", zero_division=0.0))


def blend(table: MarkerTable, columns, populations, seed: int, base=None) -> TableBlendModel:
    ids = {name_key(p): i for i, p in enumerate(populations)}
    return TableBlendModel(table, columns, [ids.get(name_key(p), -1) for p in table.populations], base, seed)


def run_case(name: str, seed: int, flip: bool) -> list[dict]:
    """Every method on one (set, seed)."""
    ds, table, columns, populations = case_inputs(name)
    ids = {p: i for i, p in enumerate(populations)}
    rows = []

    def add(method: str, budget: int, model, x_l, y_l, x_u, **extra):
        start = time.perf_counter()
        model.fit(x_l, y_l, x_u)
        seconds = time.perf_counter() - start
        probs = model.predict_proba(ds.x[ds.test])
        rows.append({"set": name, "seed": seed, "method": method, "budget": budget,
                     "macro_f1": macro_f1(ds, populations, model.classes_, probs), "fit_seconds": seconds, **extra})
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
        return model, probs

    lab0, pool0 = labelled_and_pool(ds, 5, seed)
    cells = np.sort(np.concatenate([lab0, pool0]))
    add("table alone", 0, blend(table, columns, populations, seed), ds.x[:0], np.empty(0, np.int64), ds.x[cells])
    for budget in (5, 10):
        lab, pool = labelled_and_pool(ds, budget, seed)
        y_l = np.array([ids[v] for v in ds.y[lab]])
        add("clicks alone (VIME)", budget, build_model("VIME", seed), ds.x[lab], y_l, ds.x[pool])
        add("table + clicks", budget, blend(table, columns, populations, seed, build_model("VIME", seed)),
            ds.x[lab], y_l, ds.x[pool])
    if flip:
        rows += flipped(ds, table, columns, populations, seed, add)
    return rows


def flipped(ds, table, columns, populations, seed: int, add) -> list[dict]:
    """Table + 5 clicks with the largest population's first expressed marker flipped to not expressed."""
    ids = {p: i for i, p in enumerate(populations)}
    counts = {name_key(p): int(np.sum(ds.y == p)) for p in populations}
    row = max(range(len(table.populations)), key=lambda i: counts.get(name_key(table.populations[i]), 0))
    marker = int(np.flatnonzero((table.values[row] == 1) & (np.array(columns) >= 0))[0])
    values = table.values.copy()
    values[row, marker] *= -1
    wrong = MarkerTable(table.populations, table.markers, values)
    lab, pool = labelled_and_pool(ds, 5, seed)
    y_l = np.array([ids[v] for v in ds.y[lab]])
    others = [p for p in sorted(set(ds.y[ds.test])) if name_key(p) != name_key(table.populations[row])]
    out = []
    for label, t in (("true table", table), ("flipped row", wrong)):
        model = blend(t, columns, populations, seed, build_model("VIME", seed))
        model.fit(ds.x[lab], y_l, ds.x[pool])
        probs = model.predict_proba(ds.x[ds.test])
        out.append({"set": ds.name, "seed": seed, "method": f"flip: {label} + 5 clicks", "budget": 5,
                    "flipped": f"{table.populations[row]}: {table.markers[marker]}",
                    "flagged": any(c.population == table.populations[row] and c.marker == table.markers[marker]
                                   for c in model.contradictions),
                    "macro_f1": macro_f1(ds, populations, model.classes_, probs),
                    "macro_f1_others": macro_f1(ds, populations, model.classes_, probs, others)})
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out[-1].items()}), flush=True)
    return out


def run_scyan(name: str, seed: int) -> list[dict]:
    """scyan with the same table on every cell of the set (it needs no labels), scored on the test rows."""
    ds, _, _, _ = case_inputs(name)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "case.npz"
        np.savez(npz, x=ds.x, markers=np.array(ds.markers), y=ds.y.astype(str), test=ds.test, cytof=name in MASS)
        done = subprocess.run([str(SCYAN), str(HERE / "scyan_run.py"), "--npz", str(npz), "--table", str(TABLES[name]),
                               "--seed", str(seed), "--threads", "1", "--max-minutes", "8"],
                              capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    row = {"set": name, "seed": seed, "method": "scyan (table alone)", "budget": 0, "macro_f1": result["macro_f1"],
           "fit_seconds": result["fit_seconds"], "stopped_by": result.get("stopped_by")}
    print(json.dumps(row), flush=True)
    return [row]


def print_tables(df: pd.DataFrame) -> None:
    """Mean macro-F1 (± sd over seeds) per set and method, the goals, and the flipped-row check."""
    pd.set_option("display.width", 250)
    main = df[~df["method"].str.startswith("flip")]
    g = main.groupby(["set", "method", "budget"], sort=False)["macro_f1"].agg(["mean", "std"])
    table = g.apply(lambda r: f"{r['mean']:.3f} ± {0 if np.isnan(r['std']) else r['std']:.3f}", axis=1)
    table = table.unstack(["method", "budget"])
    print("\nMacro-F1 per set (mean ± sd over seeds; test rows)")
    print(table.to_string())
    means = main.groupby(["set", "method", "budget"])["macro_f1"].mean()
    print("\nGoals per set: table alone − scyan; table + 5 clicks − clicks alone at 10")
    for name in sorted(main["set"].unique()):
        m = means[name]
        vs_scyan = m.get(("table alone", 0), np.nan) - m.get(("scyan (table alone)", 0), np.nan)
        vs_clicks = m.get(("table + clicks", 5), np.nan) - m.get(("clicks alone (VIME)", 10), np.nan)
        print(f"  {name:12s} table alone vs scyan {vs_scyan:+.3f}   table+5 vs clicks@10 {vs_clicks:+.3f}")
    seconds = main.groupby(["method", "budget"])["fit_seconds"].mean().round(1)
    print("\nMean fit seconds\n" + seconds.to_string())
    flips = df[df["method"].str.startswith("flip")]
    if len(flips):
        print("\nOne flipped table row (table + 5 clicks)")
        print(flips.groupby(["set", "method", "flipped"])[["flagged", "macro_f1", "macro_f1_others"]].mean()
              .round(3).to_string())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(TABLES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--scyan", action="store_true", help="also run scyan (needs bench/.scyan-venv)")
    ap.add_argument("--rows", type=Path)
    ap.add_argument("--summarise", type=Path)
    args = ap.parse_args()
    if args.summarise:
        print_tables(pd.DataFrame([json.loads(line) for line in args.summarise.read_text().splitlines()]))
        return
    rows = []
    for name in args.sets:
        for seed in args.seeds:
            case = run_case(name, seed, args.flip) + (run_scyan(name, seed) if args.scyan and SCYAN.exists() else [])
            rows += case
            if args.rows:
                with args.rows.open("a") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in case)
    print_tables(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
