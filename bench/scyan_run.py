"""Run scyan 1.8.0 (Blampey et al. 2023) on one labelled case with a given knowledge table, and score it.

Benchmark-only: run with the separate venv bench/.scyan-venv (see bench/scyan_setup.md), never with the
project's .venv; PyTorch and scyan are not project dependencies.

    bench/.scyan-venv/bin/python bench/scyan_run.py --npz CASE.npz --table TABLE.csv \
        [--seed 0] [--max-epochs 100] [--max-minutes 5] [--threads 2]

CASE.npz holds x (float32 n × d, already transformed: arcsinh for mass, biex/arcsinh for flow), markers (d names),
y (n population names, '' = unscorable), test (row indices to score) and cytof (bool scalar).
TABLE.csv: first column population names, one column per marker, values 1 / -1 / NA or blank.

Marker and population names are matched ignoring case, spaces, underscores and hyphens. Scyan is fitted on ALL
cells (it is unsupervised given the table), then scored on the test rows: macro-F1 over the populations present in
y[test] (cells scyan leaves unassigned, and cells given a table population that y does not have, count as wrong),
accuracy, fit seconds, epochs, share unassigned. Logs go to stderr; one JSON line goes to stdout at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path

UNASSIGNED = "__scyan_unassigned__"  # never a label of y, so unassigned cells always count as wrong


def norm(name: str) -> str:
    """Key for matching marker and population names: case, spaces, underscores and hyphens ignored."""
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--npz", type=Path, required=True)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=100)  # scyan's default; its early stopping usually ends sooner
    p.add_argument("--max-minutes", type=float, default=5.0)  # hard cap on the fit (Lightning Trainer max_time)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    # Thread caps before numpy / torch load their thread pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    # libgomp's default busy-waiting makes a 2-thread torch fit 5-20x slower (and erratic) when another process
    # holds one of the 2 cores; passive waiting removes most of that. On a shared 2-core box, --threads 1 is
    # the steadiest (measured: 15 training steps 1.6 s at 1 thread, 1.8-2.0 s at 2 passive, 4.6-22 s at 2 active).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TQDM_DISABLE", "1")  # scyan's predict loops use tqdm

    # Everything but the final JSON line goes to stderr (scyan and Lightning are chatty).
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args)
    print(json.dumps(result), flush=True)


def load_case(path: Path):
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        x = np.asarray(z["x"], dtype=np.float32)
        markers = [str(m) for m in z["markers"]]
        y = np.asarray(z["y"]).astype(str)
        test = np.asarray(z["test"], dtype=np.int64)
        cytof = bool(np.asarray(z["cytof"]).item())
    n, d = x.shape
    if len(markers) != d or len(y) != n:
        raise SystemExit(f"{path}: x is {n}×{d} but markers has {len(markers)} and y {len(y)} entries")
    if test.size == 0 or test.min() < 0 or test.max() >= n:
        raise SystemExit(f"{path}: test indices empty or out of range 0..{n - 1}")
    if not np.isfinite(x).all():
        raise SystemExit(f"{path}: x has non-finite values")
    return x, markers, y, test, cytof


def load_table(path: Path, markers: list[str]):
    """Table restricted to markers of the data (columns renamed to the data's names), and the table markers dropped."""
    import pandas as pd

    raw = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    raw.index = raw.index.astype(str).str.strip()
    by_key: dict[str, str] = {}
    for m in markers:
        if norm(m) in by_key:
            raise SystemExit(f"data markers {by_key[norm(m)]!r} and {m!r} collide once case/spaces/_/- are ignored")
        by_key[norm(m)] = m

    keep, rename, unmatched = [], {}, []
    for col in raw.columns:
        target = by_key.get(norm(col))
        if target is None:
            unmatched.append(str(col))
        elif target in rename.values():
            raise SystemExit(f"table columns {col!r} and another both match data marker {target!r}")
        else:
            keep.append(col)
            rename[col] = target
    if not keep:
        raise SystemExit(f"no column of {path} matches a data marker")

    # 1 / -1 stay; NA, blank or anything else is "unknown" (NaN), as scyan reads it.
    table = raw[keep].rename(columns=rename).apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
    bad = ~table.isin([1, -1]) & table.notna()
    if bad.to_numpy().any():
        raise SystemExit(f"{path}: values other than 1 / -1 / NA: {sorted(set(table[bad].stack()))}")
    table = table.astype("float32")
    if table.index.duplicated().any():
        raise SystemExit(f"{path}: duplicated population names {list(table.index[table.index.duplicated()])}")
    all_na = list(table.index[table.isna().all(axis=1)])
    if all_na:
        print(f"warning: populations with no known marker after matching (kept): {all_na}", file=sys.stderr)
    return table, unmatched


def run(args: argparse.Namespace) -> dict:
    import importlib.metadata

    import anndata as ad
    import lightning as L
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    import scyan  # note: importing scyan calls L.seed_everything(0); we reseed below

    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, workers=True)  # python random, numpy, torch (CPU) and dataloader workers
    torch.manual_seed(args.seed)

    x, markers, y, test, cytof = load_case(args.npz)
    table, unmatched_markers = load_table(args.table, markers)

    # Population names: table name -> y's spelling where the normalised names agree.
    y_by_key: dict[str, str] = {}
    for name in sorted(set(y) - {""}):
        y_by_key.setdefault(norm(name), name)
    pop_to_y = {p: y_by_key.get(norm(p)) for p in table.index}
    unmatched_pops = sorted(p for p, t in pop_to_y.items() if t is None)
    test_labels = sorted(set(y[test]) - {""})
    uncovered = sorted(set(test_labels) - {t for t in pop_to_y.values() if t})

    adata = ad.AnnData(X=x.copy())
    adata.var_names = markers

    # Preprocessing. x is already transformed, so scyan's own asinh_transform / auto_logicle_transform are skipped
    # and only scyan.preprocess.scale is applied. Its docstring: std=1, then "either 0 is sent to -1 (for CyTOF
    # data) or means=0 (for flow or spectral flow data)"; it picks CyTOF mode only when its own asinh_transform
    # left adata.uns["scyan_asinh"], which is absent here, so the mode is passed explicitly:
    #   mass cytometry (arcsinh(x/5) done)  -> scale(center=False)  (what scyan's CyTOF tutorial gets after asinh)
    #   flow (biex/logicle/arcsinh done)    -> scale(center=True)   (what it gets after auto_logicle_transform)
    # Both clip to ±10 (scyan's default max_value).
    scyan.preprocess.scale(adata, center=not cytof)
    preprocessing = f"scyan.preprocess.scale(center={not cytof})"

    class EpochCounter(L.Callback):
        def __init__(self) -> None:
            self.epochs = 0
            self.trainer = None

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.epochs += 1
            self.trainer = trainer
            loss = trainer.callback_metrics.get("loss_epoch")
            loss = float(loss) if loss is not None else float("nan")
            print(f"epoch {self.epochs}: loss {loss:.3f}, {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

    counter = EpochCounter()
    t0 = time.perf_counter()
    model = scyan.Scyan(adata, table)  # scyan's default hyper-parameters
    model.fit(
        max_epochs=args.max_epochs,
        max_time={"minutes": args.max_minutes},
        callbacks=[counter],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    fit_s = time.perf_counter() - t0

    stopped_by = "max_epochs" if counter.epochs >= args.max_epochs else "max_time"
    if counter.trainer is not None and counter.trainer.early_stopping_callback is not None:
        if counter.trainer.early_stopping_callback.stopped_epoch > 0:
            stopped_by = "early_stopping"

    t1 = time.perf_counter()
    pred = model.predict()  # NaN where the best population's log-prob < -50 (scyan's default log_prob_th)
    predict_s = time.perf_counter() - t1

    pred_names = np.array(
        [UNASSIGNED if not isinstance(p, str) else (pop_to_y[p] or f"table:{p}") for p in pred.astype(object)],
        dtype=object,
    )
    truth, guess = y[test].astype(object), pred_names[test]
    scored = truth != ""  # test rows are meant to be scorable; any '' among them is skipped
    truth, guess = truth[scored], guess[scored]

    f1 = f1_score(truth, guess, labels=test_labels, average="macro", zero_division=0)
    per_pop = f1_score(truth, guess, labels=test_labels, average=None, zero_division=0)

    return {
        "macro_f1": round(float(f1), 6),
        "accuracy": round(float(accuracy_score(truth, guess)), 6),
        "fit_seconds": round(fit_s, 2),
        "epochs": int(counter.epochs),
        "unassigned_share": round(float(np.mean(guess == UNASSIGNED)), 6),
        "unmatched_markers": unmatched_markers,
        "seed": args.seed,
        "scyan_version": importlib.metadata.version("scyan"),
        "torch_version": torch.__version__,
        # extra context
        "stopped_by": stopped_by,
        "predict_seconds": round(predict_s, 2),
        "n_cells_fit": int(x.shape[0]),
        "n_test_scored": int(scored.sum()),
        "markers_used": list(table.columns),
        "table_populations_not_in_y": unmatched_pops,
        "test_populations_not_in_table": uncovered,
        "unassigned_share_all_cells": round(float(pd.isna(pred).mean()), 6),
        "per_population_f1": {lab: round(float(v), 4) for lab, v in zip(test_labels, per_pop)},
        "preprocessing": preprocessing,
        "cytof": cytof,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


if __name__ == "__main__":
    main()
