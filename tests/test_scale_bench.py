"""The scale benchmark runs end to end at a small size (CI has no room for 50 M cells): every step, the per-step
table, accuracy and the Dask run giving the same clusters and labels."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def test_scale_benchmark_small(tmp_path):
    run = subprocess.run([sys.executable, "bench/scale.py", "--cells", "40000", "--file-cells", "10000", "--model",
                          "LDA", "--map", "pca", "--workers", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    steps = re.findall(r"^\| ([^|*]+?) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", out, re.M)
    assert steps == ["ingest", "open + statistics (subsample)", "cluster (FlowSOM, every cell)",
                     "map (PCA, every cell placed)", "10 labels per population", "train (LDA)",
                     "apply + counts (every cell)", "differential abundance", "export FCS per sample"]
    assert "4 samples (4 files), 5 FCS files written" in out
    assert float(re.search(r"macro-F1 ([\d.]+)", out).group(1)) > 0.8
    assert "2 worker(s): same clusters and labels as in-process: True" in out
    assert not (tmp_path / "run_40000").exists()  # outputs removed unless --keep
