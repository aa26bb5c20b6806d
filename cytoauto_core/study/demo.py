"""A built-in, realistic mass-cytometry bone-marrow sample, generated from stored population profiles.

Per-population means and covariances (arcsinh scale) were derived from Levine et al. 2015
(see scripts/derive_demo_profiles.py); no real cells are shipped. Events are returned as raw
CyTOF-like counts (5·sinh(x)) so the demo goes through the same transform path as a user's file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..base.dataset import UNASSIGNED, Dataset, make_channels

if TYPE_CHECKING:
    from ..store.workspace import Workspace

PROFILES = Path(__file__).with_name("data") / "bone_marrow_profiles.json"
DEMO_SEED = 0
DEMO_CELLS = 20_000
MIN_CELLS, MAX_CELLS = 1_000, 5_000_000

METALS = [
    "Pr141Di", "Nd142Di", "Nd143Di", "Nd144Di", "Nd145Di", "Nd146Di", "Sm147Di", "Nd148Di",
    "Sm149Di", "Nd150Di", "Eu151Di", "Sm152Di", "Eu153Di", "Sm154Di", "Gd155Di", "Gd156Di",
    "Gd158Di", "Tb159Di", "Gd160Di", "Dy161Di", "Dy162Di", "Dy163Di", "Dy164Di", "Ho165Di",
    "Er166Di", "Er167Di", "Er168Di", "Tm169Di", "Er170Di", "Yb171Di", "Yb172Di", "Yb174Di",
]
# Channels every CyTOF file carries that are not features: (detector, marker).
TECHNICAL = [
    ("Time", "Time"), ("Event_length", "Event_length"), ("Ir191Di", "DNA1"), ("Ir193Di", "DNA2"),
    ("Pt195Di", "Cisplatin"), ("Ce140Di", "Beads"), ("Center", "Center"),
]


@lru_cache(maxsize=1)
def load_profiles() -> dict:
    """The stored per-population marker profiles (means, covariances, shares)."""
    return json.loads(PROFILES.read_text())


def make_demo(n_cells: int = DEMO_CELLS, seed: int = DEMO_SEED, unassigned_fraction: float = 0.3) -> Dataset:
    """Generate `n_cells` bone-marrow-like cells (14 populations + unassigned) with a ground-truth annotation.

    Population sizes follow the real, imbalanced shares (rare ones keep at least a few cells);
    unassigned cells are transitional: drawn between two populations with widened spread.
    """
    if not MIN_CELLS <= n_cells <= MAX_CELLS:
        raise ValueError(f"the demo makes between {MIN_CELLS:,} and {MAX_CELLS:,} cells")
    profile = load_profiles()
    pops = profile["populations"]
    rng = np.random.default_rng(seed)
    n_unassigned = int(round(n_cells * unassigned_fraction))
    shares = np.array([p["share"] for p in pops])
    counts = np.maximum(np.floor(shares / shares.sum() * (n_cells - n_unassigned)).astype(int), 3)
    counts[np.argmax(counts)] += n_cells - n_unassigned - counts.sum()

    n_markers = len(profile["markers"])
    markers = np.empty((n_cells, n_markers), dtype=np.float32)
    truth = np.empty(n_cells, dtype=np.int16)
    start = 0
    factors = [np.linalg.cholesky(np.asarray(p["cov"]) + 1e-6 * np.eye(n_markers)).astype(np.float32) for p in pops]
    means = [np.asarray(p["mean"], dtype=np.float32) for p in pops]
    for k, count in enumerate(counts):
        noise = rng.standard_normal((count, n_markers), dtype=np.float32)
        markers[start:start + count] = means[k] + noise @ factors[k].T
        truth[start:start + count] = k
        start += count
    if n_unassigned:
        a = rng.choice(len(pops), n_unassigned, p=shares / shares.sum())
        b = rng.choice(len(pops), n_unassigned, p=shares / shares.sum())
        t = rng.uniform(0.25, 0.75, (n_unassigned, 1)).astype(np.float32)
        mean_stack = np.stack(means)
        centre = mean_stack[a] * (1 - t) + mean_stack[b] * t
        noise = rng.standard_normal((n_unassigned, n_markers), dtype=np.float32)
        for k in range(len(pops)):
            rows = np.flatnonzero(a == k)
            noise[rows] = 1.5 * noise[rows] @ factors[k].T
        markers[start:] = centre + noise
        truth[start:] = -1
    order = rng.permutation(n_cells)
    markers, truth = markers[order], truth[order]

    technical = _technical_channels(n_cells, rng)
    raw = np.empty((n_cells, n_markers + technical.shape[1]), dtype=np.float32)
    np.sinh(markers, out=raw[:, :n_markers])
    raw[:, :n_markers] *= 5.0
    raw[:, n_markers:] = technical
    names = METALS + [t[0] for t in TECHNICAL]
    labels = profile["markers"] + [t[1] for t in TECHNICAL]
    population_names = np.array([p["name"] for p in pops] + [UNASSIGNED], dtype=object)
    return Dataset(
        events=raw,
        channels=make_channels(names, labels),
        samples=["demo_bone_marrow"],
        sample_ids=np.zeros(n_cells, dtype=np.int32),
        annotations=pd.DataFrame({"population": population_names[truth]}),
        metadata={"$CYT": "CyTOF (simulated)", "CYTOAUTO_DEMO_SEED": str(seed)},
        name="demo_bone_marrow",
    )


def _technical_channels(n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Time, event length, DNA, viability, beads and centre channels on raw CyTOF-like scales."""
    out = np.empty((n_cells, len(TECHNICAL)), dtype=np.float32)
    out[:, 0] = np.sort(rng.uniform(0, 600_000, n_cells)).astype(np.float32)
    out[:, 1] = rng.integers(10, 60, n_cells)
    dna = rng.normal(5.4, 0.25, n_cells).astype(np.float32)
    out[:, 2] = 5 * np.sinh(dna)
    out[:, 3] = 5 * np.sinh(dna + 0.6 + rng.normal(0, 0.08, n_cells).astype(np.float32))
    out[:, 4] = 5 * np.sinh(np.abs(rng.normal(0.8, 0.6, n_cells))).astype(np.float32)
    out[:, 5] = np.abs(rng.normal(0, 2, n_cells))
    out[:, 6] = rng.normal(400, 60, n_cells)
    return out


def ensure_demo(workspace: "Workspace", n_cells: int = DEMO_CELLS, seed: int = DEMO_SEED) -> str:
    """Write the demo as a real FCS file into the workspace (first use only) and load it like a user's file."""
    from ..io import read_file, write_fcs

    path = workspace.root / "demo" / f"demo_bone_marrow_{n_cells}_seed{seed}.fcs"
    if not path.exists():
        write_fcs(path, make_demo(n_cells, seed))
    return workspace.add_dataset(read_file(path, display_name=path.name))


@dataclass
class StudySample:
    """One simulated sample of a demo study: its file name, its condition and its cells."""

    name: str
    condition: str
    dataset: Dataset


def make_demo_study(n_samples: int = 6, n_cells: int = 5_000, population: str = "Pre_B_cells", fold: float = 4.0,
                    spread: float = 0.1, unassigned_fraction: float = 0.1, seed: int = DEMO_SEED) -> list[StudySample]:
    """A two-condition study of demo samples: the first half 'A', the rest 'B'.

    Each sample is `make_demo` with its own seed (and `unassigned_fraction` transitional cells), thinned per
    population by a random factor (log-normal, sd `spread`) so shares vary between samples as they do between
    people; in 'A' samples `population` keeps a further 1/`fold` of its cells, so it is `fold` times as abundant
    in 'B'.
    """
    if population not in {p["name"] for p in load_profiles()["populations"]}:
        raise ValueError(f"the demo has no population {population!r}")
    if fold < 1:
        raise ValueError("fold is how many times more abundant the population is in 'B' (at least 1)")
    rng = np.random.default_rng(seed)
    study = []
    for i in range(n_samples):
        condition = "A" if i < n_samples // 2 else "B"
        demo = make_demo(n_cells, seed=seed + 1 + i, unassigned_fraction=unassigned_fraction)
        names = demo.annotations["population"].to_numpy()
        keep_share = {name: min(1.0, 0.8 * float(np.exp(rng.normal(0.0, spread)))) for name in pd.unique(names)}
        if condition == "A":
            keep_share[population] /= fold
        keep = rng.random(len(names)) < pd.Series(names).map(keep_share).to_numpy()
        rows = np.flatnonzero(keep)
        name = f"demo_{condition}{i + 1}.fcs"
        study.append(StudySample(name, condition, Dataset(
            events=demo.events[rows], channels=demo.channels, samples=[name],
            sample_ids=np.zeros(len(rows), dtype=np.int32),
            annotations=demo.annotations.iloc[rows].reset_index(drop=True),
            metadata={**demo.metadata, "CYTOAUTO_DEMO_CONDITION": condition}, name=name)))
    return study
