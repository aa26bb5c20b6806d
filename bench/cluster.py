"""Clustering benchmark: the project's FlowSOM-style clustering against the `flowsom` package on every labelled set.

Per set (all cells clustered, including ungated ones; scored on the gated cells), for k = the number of populations
and for over-clustering (k = 2 × populations, capped at the 100 SOM nodes), both on a 10 × 10 SOM with the same
features and seeds: mean F1 with Weber & Robinson's Hungarian matching, ARI, seconds. The package also runs on the
features after the project's scale balancing, to show what that step contributes. `--million` times 1M demo-like
cells × 32 markers (seconds and peak memory). `--to-model`: over-clusters named by their majority population (a
simulated user reading the heatmap) give their 10 most central cells as labels to the default model, against the
clusters alone (every cell named by its cluster's majority), macro-F1 on the test rows; over-clustered as a user would
with the page's default of 20 clusters (or 2 × populations where that is more).

Run:  nice .venv/bin/python bench/cluster.py                       # both methods, every set, 10 seeds
      nice .venv/bin/python bench/cluster.py --sets levine32 --seeds 0
      nice .venv/bin/python bench/cluster.py --million
      nice .venv/bin/python bench/cluster.py --to-model
The `flowsom` package (saeyslab, 0.2.2) is installed without its plotting/IO dependencies (`pip install --no-deps
flowsom==0.2.2 igraph==1.0.0 texttable`); only its estimator (flowsom.models.FlowSOMEstimator) is imported, the class its FlowSOM()
runs.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import resource
import sys
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devsuite_sets  # noqa: E402
from devsuite_sets import UNSCORABLE, DevSet  # noqa: E402

from cytoauto_core.tools.clustering import ClusteringParams, FlowSOM  # noqa: E402
from cytoauto_core.tools.clustering.flowsom import balance_scales  # noqa: E402
from cytoauto_core.tools.clustering.profile import central_cells  # noqa: E402
from cytoauto_core.tools.metrics import matched_f1  # noqa: E402
from cytoauto_core.tools.training import build_model  # noqa: E402

COMPARE_SEEDS = tuple(range(10))  # seed-to-seed sd of mean F1 is 0.04–0.05: 3 seeds cannot separate the methods
MODEL_SEEDS = (0, 1, 2)  # --to-model fits the model once per seed and set
GRID = 10
CENTRAL_LABELS = 10
DEFAULT_CLUSTERS = 20  # the Cluster page's default


@functools.lru_cache(maxsize=1)
def flowsom_estimator():
    """The `flowsom` package's FlowSOMEstimator, imported without running flowsom/__init__ (which needs scanpy)."""
    spec = importlib.util.find_spec("flowsom")
    if spec is None:
        raise SystemExit("the flowsom package is not installed: pip install --no-deps flowsom==0.2.2 igraph==1.0.0 texttable")
    package = types.ModuleType("flowsom")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("flowsom", package)
    return importlib.import_module("flowsom.models").FlowSOMEstimator


def truth_codes(ds: DevSet) -> np.ndarray:
    """Integer truth per cell, -1 for unscorable cells."""
    names = np.unique(ds.y[ds.y != UNSCORABLE])
    codes = np.searchsorted(names, ds.y).astype(np.int64)
    codes[ds.y == UNSCORABLE] = -1
    return codes


def cluster_ours(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    return FlowSOM(ClusteringParams(n_clusters=k, grid=GRID, seed=seed)).fit_predict(x).clusters


def cluster_package(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    estimator = flowsom_estimator()(xdim=GRID, ydim=GRID, n_clusters=k, seed=seed)
    return np.asarray(estimator.fit_predict(np.asarray(x, dtype=np.float64)))


def cluster_package_balanced(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The package on the features as the project's clustering sees them (markers on another scale rescaled)."""
    return cluster_package(x * balance_scales(x), k, seed)


METHODS = {"CytoAutoCluster": cluster_ours, "flowsom package": cluster_package,
           "flowsom package, balanced": cluster_package_balanced}


def compare(sets: list[str], seeds: list[int]) -> pd.DataFrame:
    rows = []
    warm = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    for run in METHODS.values():  # both SOMs are numba code: compile them before anything is timed
        run(warm, 2, 0)
    for name in sets:
        ds = devsuite_sets.load(name)
        truth = truth_codes(ds)
        n_pop = int(truth.max()) + 1
        print(ds.describe(), flush=True)
        for setting, k in (("k = populations", n_pop), ("k = 2 × populations", min(2 * n_pop, GRID * GRID))):
            for seed in seeds:
                for method, run in METHODS.items():
                    start = time.perf_counter()
                    clusters = run(ds.x, k, seed)
                    seconds = time.perf_counter() - start
                    scored = truth >= 0
                    rows.append({"set": name, "setting": setting, "k": k, "seed": seed, "method": method,
                                 "mean_f1": matched_f1(clusters, truth),
                                 "ari": adjusted_rand_score(truth[scored], clusters[scored]), "seconds": seconds})
                    print({k_: (round(v, 3) if isinstance(v, float) else v) for k_, v in rows[-1].items()}, flush=True)
    return pd.DataFrame(rows)


def print_comparison(df: pd.DataFrame) -> None:
    """Mean over seeds per setting and set: F1 and ARI of each method, seconds of ours and of the package."""
    short = {"CytoAutoCluster": "ours", "flowsom package": "package", "flowsom package, balanced": "package, balanced"}
    mean = df.assign(method=df["method"].map(short)).groupby(["setting", "set", "method"])[["mean_f1", "ari", "seconds"]]
    table = mean.mean().unstack("method")
    table.columns = [f"{metric} {method}" for metric, method in table.columns]
    keep = [c for c in table.columns if not c.startswith("seconds package, balanced")]
    print(table[keep].round(3).to_string())
    print("\nMean over sets:")
    print(table[keep].groupby(level="setting").mean().round(3).to_string())


def million(seed: int = 0) -> None:
    """1M cells × 32 markers of the demo generator, transformed as the app does: seconds of one clustering, the memory
    it allocates beyond the events (tracemalloc peak) and the process's peak resident memory (incl. generating them)."""
    from cytoauto_core.prep.transforms import default_spec, transform_features
    from cytoauto_core.study.demo import make_demo

    dataset = make_demo(1_000_000, seed)
    x = transform_features(dataset, default_spec(dataset))
    del dataset
    FlowSOM(ClusteringParams(n_clusters=2, seed=seed)).fit_predict(x[:1_000])  # numba compilation, not timed
    tracemalloc.start()
    start = time.perf_counter()
    result = FlowSOM(ClusteringParams(n_clusters=20, seed=seed)).fit_predict(x)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 1e9
    tracemalloc.stop()
    print(pd.DataFrame([{"cells": x.shape[0], "markers": x.shape[1], "clusters": int(result.clusters.max()) + 1,
                         "seconds": round(seconds, 1), "peak_extra_GB": round(peak, 3),
                         "events_GB": round(x.nbytes / 1e9, 3),
                         "process_peak_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}]
                       ).to_string(index=False))


def to_model(sets: list[str], seeds: list[int]) -> pd.DataFrame:
    """Over-clusters named by majority → 10 central cells each as labels → default model, against the clusters alone."""
    rows = []
    for name in sets:
        ds = devsuite_sets.load(name)
        truth = truth_codes(ds)
        n_pop = int(truth.max()) + 1
        print(ds.describe(), flush=True)
        for seed in seeds:
            clusters = cluster_ours(ds.x, min(max(DEFAULT_CLUSTERS, 2 * n_pop), GRID * GRID), seed)
            named = _majority_names(clusters, ds)
            test = ds.test
            y_test = ds.y[test]
            populations = np.unique(y_test)
            alone = np.array([named.get(int(c), UNSCORABLE) for c in clusters[test]])
            if len(set(named.values())) < 2:
                print(f"{name} seed {seed}: every cluster has the same majority; nothing to train on, case left out")
                continue
            lab = np.concatenate([central_cells(ds.x, clusters, c, CENTRAL_LABELS) for c in named])
            lab_y = np.array([named[int(c)] for c in clusters[lab]])
            pool = np.setdiff1d(np.arange(len(ds.y)), np.concatenate([lab, test]))
            pool = np.sort(np.random.default_rng(seed).choice(pool, min(pool.size, 50_000), replace=False))
            model = build_model("VIME", seed)
            start = time.perf_counter()
            model.fit(ds.x[lab], lab_y, ds.x[pool])
            seconds = time.perf_counter() - start
            pred = np.asarray(model.classes_)[model.predict_proba(ds.x[test]).argmax(axis=1)]
            for method, p in (("clusters alone", alone), ("named clusters → VIME", pred)):
                rows.append({"set": name, "seed": seed, "method": method,
                             "macro_f1": float(f1_score(y_test, p, labels=populations, average="macro", zero_division=0)),
                             "labels": int(lab.size), "fit_seconds": seconds if method != "clusters alone" else 0.0})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def _majority_names(clusters: np.ndarray, ds: DevSet) -> dict[int, str]:
    """Each cluster's majority population among its train cells (the simulated user sees the heatmap, not the test)."""
    named = {}
    train = ds.train
    for c in np.unique(clusters):
        values, counts = np.unique(ds.y[train][clusters[train] == c], return_counts=True)
        if values.size:
            named[int(c)] = str(values[counts.argmax()])
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(devsuite_sets.LOADERS))
    parser.add_argument("--seeds", nargs="+", type=int, help=f"default {COMPARE_SEEDS[0]}–{COMPARE_SEEDS[-1]}; "
                        f"--to-model {MODEL_SEEDS}")
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--to-model", action="store_true")
    args = parser.parse_args()
    if args.million:
        million()
    elif args.to_model:
        df = to_model(args.sets, args.seeds or list(MODEL_SEEDS))
        print(df.groupby(["set", "method"])["macro_f1"].mean().unstack("method").round(3).to_string())
        print("\nMean over sets:\n" + df.groupby("method")["macro_f1"].mean().round(3).to_string())
    else:
        print_comparison(compare(args.sets, args.seeds or list(COMPARE_SEEDS)))


if __name__ == "__main__":
    main()
