"""Benchmark the batch command: end-to-end cells/s of apply_to_files with 1 and 2 Dask workers.

Inputs (generated once into bench/out/batch/, gitignored): --files demo FCS files of --cells cells each
(make_demo seeds 1..files) and as many 1,000-cell files (same seeds) to measure per-file overhead. The
bundle is LDA (seed 0) trained on the demo labels of make_demo(20_000, seed 0), default transform.
Output is CSV only unless --format says otherwise (CSV is what a user most often asks for and the slowest).

Wall time includes starting the embedded LocalCluster; per-file overhead is the worker time one 1k-cell
file costs: (wall − startup) × workers / files of the tiny run.
Run: nice .venv/bin/python bench/batch.py [--files 20] [--cells 500000] [--format csv|fcs|both] [--workers 1,2]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "batch"
TRAIN_CELLS, TRAIN_SEED, MODEL_SEED, TINY_CELLS = 20_000, 0, 0, 1_000
FORMATS = {"csv": ("csv",), "fcs": ("fcs",), "both": ("csv", "fcs")}


def make_bundle() -> Path:
    """An LDA bundle trained on the demo's ground-truth populations (saved once)."""
    from cytoauto_core.prep.transforms import default_spec, transform_features
    from cytoauto_core.study.demo import make_demo
    from cytoauto_core.tools.models.bundle import ModelBundle, save_bundle
    from cytoauto_core.tools.training import build_model

    path = OUT / "bundle_lda"
    if not (path / "bundle.json").exists():
        train = make_demo(TRAIN_CELLS, TRAIN_SEED)
        spec = default_spec(train)
        x = transform_features(train, spec)
        names = sorted(set(train.annotations["population"]) - {"unassigned"})
        y = train.annotations["population"].map({n: i for i, n in enumerate(names)}).fillna(-1).to_numpy(int)
        model = build_model("LDA", MODEL_SEED).fit(x[y >= 0], y[y >= 0], x[y < 0])
        ids = [int(c) for c in model.classes_]
        save_bundle(ModelBundle(model, spec, ids, [names[i] for i in ids], name="LDA bench", seed=MODEL_SEED), str(path))
    return path


def make_files(n_files: int, n_cells: int) -> list[Path]:
    """Demo FCS files with seeds 1..n_files, written once per size and seed."""
    from cytoauto_core.io import write_fcs
    from cytoauto_core.study.demo import make_demo

    paths = []
    for seed in range(1, n_files + 1):
        path = OUT / f"cells{n_cells}" / f"demo_seed{seed}.fcs"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_fcs(path, make_demo(n_cells, seed))
        paths.append(path)
    return paths


def main() -> None:
    from cytoauto_core.run.batch import apply_to_files

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--cells", type=int, default=500_000)
    ap.add_argument("--format", choices=sorted(FORMATS), default="csv")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    bundle, big, tiny = make_bundle(), make_files(args.files, args.cells), make_files(args.files, TINY_CELLS)
    print(f"format {args.format}; {args.files} files × {args.cells:,} cells; LDA bundle (train seed {TRAIN_SEED}, "
          f"model seed {MODEL_SEED}); file seeds 1..{args.files}")
    print("workers | files | cells | wall s | startup s | cells/s end to end | cells/s after startup "
          "| task s (sum) | per-file overhead s")
    for workers in (int(w) for w in args.workers.split(",")):
        runs = []
        for paths in (big, tiny):
            out = OUT / "results"
            shutil.rmtree(out, ignore_errors=True)
            runs.append(apply_to_files(bundle, [str(p) for p in paths], out, FORMATS[args.format],
                                       workers=workers, progress=False))
        report, small = runs
        if report.failed or small.failed:
            raise SystemExit(f"benchmark run failed: {(report.failed or small.failed)[0].error}")
        busy = report.seconds - report.startup_seconds
        overhead = (small.seconds - small.startup_seconds) * workers / len(tiny)
        print(f"{workers} | {len(big)} | {report.cells:,} | {report.seconds:.1f} | {report.startup_seconds:.1f} | "
              f"{report.cells / report.seconds:,.0f} | {report.cells / busy:,.0f} | "
              f"{sum(f.seconds for f in report.files):.1f} | {overhead:.3f}", flush=True)


if __name__ == "__main__":
    main()
