"""How well per-file QC flags a shifted file: false flags on files like the training data, detection per shift.

Reference: the demo sample the shipped bundle is trained on (make_demo 20,000 cells, seed 0), default
transform, limits from cytoauto_core.prep.qc (one training sample: DRIFT_FLOOR, or SAMPLING / √cells for small
files). Unshifted files: demo seeds 1..N at 100 and 300 cells (random cells of a 1,000-cell demo; the demo
makes no fewer), 1,000, 10,000 and 100,000 cells. Shifted files: 10,000 cells, one marker multiplied by a
factor on the instrument scale (as a miscalibrated detector or a different staining would), every one of the
32 markers in turn, fresh seeds. Reported: the share of files flagged, the median worst-marker drift, and the
share of flagged shifted files whose named marker is the shifted one.
Run: nice .venv/bin/python bench/qc.py [--files 50]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cytoauto_core.base.labelled import LabelledCells  # noqa: E402
from cytoauto_core.prep.qc import SAMPLING, file_qc, reference_from  # noqa: E402
from cytoauto_core.prep.transforms import default_spec, transform_features  # noqa: E402
from cytoauto_core.study.demo import MIN_CELLS, make_demo  # noqa: E402

FACTORS = (1.1, 1.2, 1.3, 1.5, 2.0)
SIZES = (100, 300, 1_000, 10_000, 100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50, help="unshifted files per size")
    args = parser.parse_args()
    train = make_demo(20_000, 0)
    spec = default_spec(train)
    reference = reference_from(transform_features(train, spec), spec.features, train.sample_ids)
    rows = []

    def judge(ds, shifted: str | None) -> dict:
        cells = LabelledCells(np.zeros(ds.n_cells, np.int32), {0: "any"}, np.ones(ds.n_cells, np.float32))
        qc = file_qc(ds, cells, spec, reference)
        named = ds.channels[ds.channel_index([shifted])[0]].label if shifted else None
        return {"flagged": qc.drift_flag, "drift": qc.drift, "named right": qc.drift_marker == named}

    rng = np.random.default_rng(0)
    for n in SIZES:
        for seed in range(1, args.files + 1):
            ds = make_demo(max(n, MIN_CELLS), seed)
            if n < MIN_CELLS:
                keep = np.sort(rng.choice(ds.n_cells, n, replace=False))
                ds = dataclasses.replace(ds, events=ds.events[keep], sample_ids=ds.sample_ids[keep],
                                         annotations=ds.annotations.iloc[keep].reset_index(drop=True))
            rows.append({"file": f"unshifted, {n:,} cells", **judge(ds, None)})
    seed = 1_000
    for factor in FACTORS:
        for marker in spec.features:
            seed += 1
            ds = make_demo(10_000, seed)
            events = np.array(ds.events)
            events[:, ds.channel_index([marker])[0]] *= factor
            rows.append({"file": f"one marker x{factor:g}, 10,000 cells",
                         **judge(dataclasses.replace(ds, events=events), marker)})
    frame = pd.DataFrame(rows)
    summary = frame.groupby("file", sort=False).agg(
        files=("flagged", "size"), flagged=("flagged", "mean"), median_drift=("drift", "median"),
        max_drift=("drift", "max"),
        named_right_when_flagged=("named right", lambda s: s[frame.loc[s.index, "flagged"]].mean()))
    print(f"reference: demo seed 0, 20,000 cells; a marker is flagged above drift max({reference.limits.min():.3f}, "
          f"{SAMPLING:g} / sqrt(cells))\n")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
