"""Derive the demo generator's per-population means and covariances from the Levine_32dim cells.

Only summary numbers are stored (cytoauto_core/study/data/bone_marrow_profiles.json), never cells.
Source: Levine et al. 2015, Cell 162:184-197 (FlowRepository FR-FCM-ZZPH), arcsinh cofactor 5.
Run: .venv/bin/python scripts/derive_demo_profiles.py ../shared/data/levine32/Levine_32dim_labeled30k_arcsinh.csv
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "cytoauto_core" / "study" / "data" / "bone_marrow_profiles.json"


def main(csv_path: str) -> None:
    frame = pd.read_csv(csv_path)
    markers = [c for c in frame.columns if c not in ("label", "population", "split")]
    populations = []
    for label, group in frame.groupby("label"):
        x = group[markers].to_numpy(np.float64)
        populations.append({
            "id": int(label),
            "name": str(group["population"].iloc[0]),
            "share": round(len(group) / len(frame), 6),
            "mean": np.round(x.mean(axis=0), 4).tolist(),
            "cov": np.round(np.cov(x, rowvar=False), 5).tolist(),
        })
    profile = {
        "source": "Levine et al. 2015 (Cell 162:184-197), individual H1, 30,000 gated cells, arcsinh cofactor 5",
        "markers": markers,
        "populations": populations,
    }
    OUT.write_text(json.dumps(profile, separators=(",", ":")))
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, {len(populations)} populations)")


if __name__ == "__main__":
    main(sys.argv[1])
