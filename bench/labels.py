"""Server time of a lasso labelling round trip on 1M cells: polygon → all cells → saved labels → updated counts.

Run: .venv/bin/python -m bench.labels [--cells 1000000] [--seed 0]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cytoauto_core.store.labels import LabelStore
from cytoauto_core.tools.selection import cells_in_selection


def lasso(center: tuple[float, float], radius: float, vertices: int) -> dict:
    """A circular lasso as Plotly reports it (data coordinates)."""
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    return {"lasso": [{"x": (center[0] + radius * np.cos(angles)).tolist(),
                       "y": (center[1] + radius * np.sin(angles)).tolist()}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(0, 6, (14, 2))
    xy = (centres[rng.integers(0, 14, args.cells)] + rng.normal(0, 1, (args.cells, 2))).astype(np.float32)
    print(f"seed {args.seed}; {args.cells:,} cells with map coordinates; {args.repeats} repeats per row")
    print(f"{'lasso vertices':>14} {'cells caught':>12} {'select ms':>10} {'assign+save ms':>15} {'counts ms':>10} {'round trip ms':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(Path(tmp), args.cells)
        pops = [store.create_population(f"population {i}") for i in range(4)]
        for vertices in (50, 200, 1000):
            timings = []
            for r in range(args.repeats):
                sel = lasso(tuple(centres[r % 14]), 2.5, vertices)
                t0 = time.perf_counter()
                cells = cells_in_selection(xy, sel)
                t1 = time.perf_counter()
                store.assign(cells, pops[r % len(pops)])
                t2 = time.perf_counter()
                store.counts()
                t3 = time.perf_counter()
                timings.append((cells.size, t1 - t0, t2 - t1, t3 - t2, t3 - t0))
            n, a, b, c, d = np.median(np.array(timings), axis=0)
            print(f"{vertices:>14} {int(n):>12,} {a * 1e3:>10.0f} {b * 1e3:>15.0f} {c * 1e3:>10.0f} {d * 1e3:>14.0f}")


if __name__ == "__main__":
    main()
