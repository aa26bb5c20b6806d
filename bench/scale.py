"""A whole study at scale: seconds and peak RSS per step, from files on disk to labelled exports.

Inputs (generated once into bench/out/scale/, gitignored): --cells cells in demo FCS files of --file-cells each
(make_demo, 39 channels, 30 % transitional 'unassigned' cells; file i has seed 1 + i; in the first half of the
files, condition 'A', Pre_B_cells keep a quarter of their cells, so the differential abundance has a known answer).
Steps, each in this one process: ingest (python -m cytoauto_core ingest's function) → open and statistics of a
200,000-cell stratified subsample → FlowSOM (fitted on 200,000 cells, every cell assigned) → UMAP (fitted on 50,000,
every cell placed) → 10 labels per population (--seed, default 0, from the ground truth) → train VIME on them plus 50,000
unlabelled cells (no comparison models) → apply to every cell, with exact counts per sample → differential
abundance B vs A → FCS export per sample. Peak RSS is the process's high-water mark of each step (reset between steps
through /proc/self/clear_refs), so it includes everything the step brought into memory. Accuracy: macro-F1 over the
cells of the demo's 14 named populations (an unassigned or unknown call counts as wrong).
--workers 1,2 then repeats the cluster assignment and the apply pass on an embedded Dask cluster of that many worker
processes and checks that they give the same labels.
Run: nice .venv/bin/python bench/scale.py --cells 1000000 [--workers 1,2] [--keep] [--model LDA --map pca (quick)]
tests/test_scale_bench.py runs it at 40,000 cells (LDA, PCA) in CI.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "scale"
LABELS_PER_POPULATION, SHRUNK, SHRINK_TO = 10, "Pre_B_cells", 0.25
ROWS: list[dict] = []


def _status(field: str) -> int:
    """A /proc/self/status value in bytes (VmHWM: peak resident set since the last reset; VmRSS: now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@contextmanager
def step(name: str, cells: int):
    """Time a step and record its peak RSS (the high-water mark is reset when it starts)."""
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    ROWS.append({"step": name, "seconds": seconds, "peak_gb": _status("VmHWM") / 1e9, "cells": cells})
    print(f"  {name:<34} {seconds:8.1f} s  peak RSS {_status('VmHWM') / 1e9:5.2f} GB", flush=True)


def make_files(total: int, per_file: int, out: Path) -> list[Path]:
    """The study's FCS files (written once): demo files, condition A with fewer Pre_B_cells."""
    from cytoauto_core.base.dataset import Dataset
    from cytoauto_core.io import write_fcs
    from cytoauto_core.study.demo import make_demo

    folder = out / f"files_{per_file}"
    folder.mkdir(parents=True, exist_ok=True)
    n_files = total // per_file
    paths = []
    for i in range(n_files):
        condition = "A" if i < n_files // 2 else "B"
        path = folder / f"demo_{i:03d}_{condition}.fcs"
        if not path.exists():
            demo = make_demo(per_file, seed=1 + i)
            keep = np.ones(demo.n_cells, bool)
            if condition == "A":
                rng = np.random.default_rng(1000 + i)
                shrunk = (demo.annotations["population"] == SHRUNK).to_numpy()
                keep[shrunk] = rng.random(int(shrunk.sum())) < SHRINK_TO
            rows = np.flatnonzero(keep)
            part = Dataset(events=demo.events[rows], channels=demo.channels, samples=[path.name],
                           sample_ids=np.zeros(rows.size, np.int32),
                           annotations=demo.annotations.iloc[rows].reset_index(drop=True),
                           metadata={**demo.metadata, "CONDITION": condition}, name=path.name)
            tmp = path.with_suffix(".partial")
            write_fcs(tmp, part)
            tmp.replace(path)
        paths.append(path)
    return paths


def pick_labels(truth, per_population: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """`per_population` seeded rows of each named population (the user's clicks), their ids and names."""
    codes = np.asarray(truth.cat.codes, np.int64)
    names = [str(c) for c in truth.cat.categories]
    rng = np.random.default_rng(seed)
    rows, ids, kept = [], [], {}
    for code, name in enumerate(names):
        if name == "unassigned":
            continue
        members = np.flatnonzero(codes == code)
        take = np.sort(rng.choice(members, min(per_population, members.size), replace=False))
        kept[len(kept)] = name
        rows.append(take)
        ids.append(np.full(take.size, len(kept) - 1))
    order = np.argsort(np.concatenate(rows))
    return np.concatenate(rows)[order], np.concatenate(ids)[order], kept


def macro_f1(population_id: np.ndarray, truth, names: dict[int, str]) -> float:
    """Macro-F1 over the cells of named populations, from a confusion matrix built chunk by chunk."""
    from cytoauto_core.base.chunks import iter_rows

    truth_names = [str(c) for c in truth.cat.categories]
    to_id = np.array([{n: i for i, n in names.items()}.get(n, -1) for n in truth_names])
    k = len(names)
    confusion = np.zeros((k, k + 1), np.int64)  # last column: unassigned or unknown
    codes = np.asarray(truth.cat.codes)
    for start, pred in iter_rows(population_id):
        t = to_id[codes[start:start + pred.shape[0]]]
        p = np.where(pred >= 0, pred, k)
        named = t >= 0
        confusion += np.bincount(t[named] * (k + 1) + p[named], minlength=k * (k + 1)).reshape(k, k + 1)
    tp = np.diag(confusion[:, :k])
    precision = tp / np.maximum(confusion[:, :k].sum(axis=0), 1)
    recall = tp / np.maximum(confusion.sum(axis=1), 1)
    return float(np.mean(np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)))


def journey(paths: list[Path], work: Path, total: int, model: str, method: str, seed: int) -> dict:
    """Every step once, in this process; returns what the Dask comparison and the summary need."""
    from cytoauto_core.base.labelled import LabelledCells
    from cytoauto_core.io.sample_exports import write_sample_exports
    from cytoauto_core.prep.transforms import default_spec
    from cytoauto_core.store.workspace import Workspace
    from cytoauto_core.study.abundance import CountTable
    from cytoauto_core.study.differential import Design, differential_abundance
    from cytoauto_core.study.ingest import ingest
    from cytoauto_core.study.large_study import cluster_study, map_study, summarise, train_study
    from cytoauto_core.study.passes import predict_cells
    from cytoauto_core.study.samples import SAMPLE
    from cytoauto_core.tools.clustering.flowsom import ClusteringParams
    from cytoauto_core.tools.embeddings import EmbeddingParams
    from cytoauto_core.tools.training import TrainingRequest

    workspace = Workspace(work / "workspace")
    with step("ingest", total):
        report = ingest([str(p) for p in paths], workspace)
    with step("open + statistics (subsample)", total):
        ds = workspace.load_dataset(report.key)
        spec = default_spec(ds)
        summary = summarise(ds, spec, seed)
    with step("cluster (FlowSOM, every cell)", total):
        clustering, clusters = cluster_study(ds, spec, ClusteringParams(seed=seed), work / "clusters.npy")
    with step(f"map ({method.upper()}, every cell placed)", total):
        coords, _ = map_study(ds, spec, EmbeddingParams(method=method, seed=seed), clustering, work / "map.npy")
    with step("10 labels per population", total):
        truth = ds.annotations["population"]
        rows, ids, names = pick_labels(truth, LABELS_PER_POPULATION, seed)
    with step(f"train ({model})", total):
        outcome = train_study(ds, spec, rows, ids, names, TrainingRequest(compare=[], apply=model, seed=seed),
                              work / "models", lambda f, m: None, lambda: False)
    with step("apply + counts (every cell)", total):
        prediction = predict_cells(ds, outcome.bundle_dir, work / "prediction")
    with step("differential abundance", total):
        named = [names[i] for i in sorted(names)]
        table = CountTable(prediction.counts[named], prediction.counts.sum(axis=1).rename("total"))
        metadata = table.counts.index.to_frame(index=False).rename(columns={"sample": SAMPLE})
        metadata["condition"] = ["A" if "_A." in s else "B" for s in metadata[SAMPLE]]
        da = differential_abundance(table, metadata, Design("condition", "A", "B"))
    with step("export FCS per sample", total):
        cells = LabelledCells(prediction.population_id, names, prediction.confidence, novelty=prediction.novelty,
                              coords=coords)
        written = write_sample_exports(work / "export", ds, cells, ("fcs",))
    shrunk = da.set_index("population").loc[SHRUNK]
    return {"dataset": ds, "spec": spec, "clustering": clustering, "clusters": clusters, "bundle": outcome.bundle_dir,
            "population_id": prediction.population_id, "macro_f1": macro_f1(prediction.population_id, truth, names),
            "summary": summary, "files": len(written), "shrunk_log2fc": float(shrunk["log2_fold_change"]),
            "shrunk_p": float(shrunk["p_adjusted"]), "samples": len(ds.samples)}


def on_dask(result: dict, work: Path, workers: int) -> None:
    """The cluster assignment and the apply pass on an embedded Dask cluster; the same labels as in-process."""
    from cytoauto_core.run.batch import dask_client
    from cytoauto_core.study.passes import assign_clusters, predict_cells

    ds, total = result["dataset"], result["dataset"].n_cells
    with dask_client(None, workers) as client:
        with step(f"cluster assignment, {workers} Dask worker(s)", total):
            clusters = assign_clusters(ds, result["spec"], result["clustering"], work / f"clusters_dask{workers}.npy", client)
        with step(f"apply + counts, {workers} Dask worker(s)", total):
            prediction = predict_cells(ds, result["bundle"], work / f"prediction_dask{workers}", client=client)
    same = np.array_equal(clusters, result["clusters"]) and np.array_equal(prediction.population_id,
                                                                           result["population_id"])
    print(f"  {workers} worker(s): same clusters and labels as in-process: {same}")
    if not same:
        raise SystemExit("the Dask run gave different results")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--file-cells", type=int, default=500_000)
    ap.add_argument("--workers", default="", help="comma-separated Dask worker counts to compare, e.g. 1,2")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and outputs under --out")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the generated files and the run")
    ap.add_argument("--model", default="VIME", help="the model trained (VIME; LDA for a quick run)")
    ap.add_argument("--map", default="umap", choices=["umap", "tsne", "pca"], help="the map fitted")
    ap.add_argument("--seed", type=int, default=0, help="seed of the labelled cells, subsamples, map and model")
    args = ap.parse_args()
    started = time.perf_counter()
    paths = make_files(args.cells, args.file_cells, args.out)
    total_cells = args.cells
    print(f"{len(paths)} files, generated/checked in {time.perf_counter() - started:.0f} s")
    work = args.out / f"run_{args.cells}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result = journey(paths, work, total_cells, args.model, args.map, args.seed)
    journey_seconds = sum(r["seconds"] for r in ROWS)
    n = result["dataset"].n_cells
    print("| step | seconds | µs per cell | peak RSS (GB) |\n|---|---:|---:|---:|")
    for r in ROWS:
        print(f"| {r['step']} | {r['seconds']:.1f} | {1e6 * r['seconds'] / n:.2f} | {r['peak_gb']:.2f} |")
    print(f"| **journey** | **{journey_seconds:.0f}** | {1e6 * journey_seconds / n:.2f} | "
          f"**{max(r['peak_gb'] for r in ROWS):.2f}** (max) |")
    print(f"{n:,} cells in {result['samples']} samples ({len(paths)} files), {result['files']} FCS files written; "
          f"macro-F1 {result['macro_f1']:.3f} ({args.model}, 10 labels per population, seed {args.seed}); {SHRUNK} B vs A: log2 fold "
          f"change {result['shrunk_log2fc']:.2f}, adjusted p {result['shrunk_p']:.2g}")
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        ROWS.clear()
        on_dask(result, work, workers)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
