"""Benchmark loading: FCS and CSV files of 100k/1M/5M demo cells, read time and peak memory per read.

Two measurements per file: `read` (read_file from disk) and `upload` (the app's upload path: the
whole file held in memory as Streamlit does, streamed to the workspace, parsed, stored as a dataset).

Run: .venv/bin/python bench/load.py [--sizes 100000,1000000] [--seed 0]. Each read runs in a fresh
subprocess with its peak RSS (VmHWM) reset
through /proc/self/clear_refs (Linux), so earlier runs and the parent cannot contaminate it; files go to bench/out/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from cytoauto_core.io import read_file

def status_kb(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM; ru_maxrss would keep the pre-exec parent's peak
before = status_kb("VmRSS:")
t = time.perf_counter()
if {upload!r}:
    import io, tempfile
    from cytoauto_core.store.workspace import Workspace
    from ui.upload import store_uploads
    buffer = io.BytesIO(open({path!r}, "rb").read())  # Streamlit holds the whole upload in memory
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(tmp)
        key = store_uploads(ws, [("upload" + {suffix!r}, buffer)])
        cells = ws.load_dataset(key).n_cells
else:
    cells = read_file({path!r}).n_cells
seconds = time.perf_counter() - t
print(json.dumps({{"seconds": seconds, "peak_mb": (status_kb("VmHWM:") - before) / 1024, "cells": cells}}))
"""


def make_files(n_cells: int, seed: int) -> dict[str, Path]:
    """Write the demo (39 channels + population → 40 FCS channels) as FCS and CSV, once per size and seed."""
    from cytoauto_core.io import write_fcs
    from cytoauto_core.study.demo import make_demo

    fcs, csv = OUT / f"demo_{n_cells}_seed{seed}.fcs", OUT / f"demo_{n_cells}_seed{seed}.csv"
    if not (fcs.exists() and csv.exists()):
        ds = make_demo(n_cells, seed)
        write_fcs(fcs, ds)
        frame = ds.annotations.copy()
        for i, name in enumerate(ds.channel_names):
            frame[name] = ds.events[:, i]
        _write_csv(frame, csv)
    return {"FCS": fcs, "CSV": csv}


def _write_csv(frame, path: Path) -> None:
    """Write a frame as CSV quickly with pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)


def measure(path: Path, upload: bool) -> dict:
    """Read (or upload) `path` in a fresh interpreter and return the seconds and peak RSS increase."""
    code = _CHILD.format(root=str(ROOT), path=str(path), upload=upload, suffix=path.suffix)
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,5000000", help="comma-separated cell counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"seed {args.seed}")
    print(f"{'format':<6} {'path':<7} {'cells':>10} {'file MB':>9} {'seconds':>8} {'peak MB':>9} {'peak/file':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        for fmt, path in make_files(n, args.seed).items():
            for upload in (False, True):
                r = measure(path, upload)
                size_mb = path.stat().st_size / 2**20
                print(f"{fmt:<6} {'upload' if upload else 'read':<7} {r['cells']:>10,} {size_mb:>9.1f} "
                      f"{r['seconds']:>8.3f} {r['peak_mb']:>9.1f} {r['peak_mb'] / size_mb:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
