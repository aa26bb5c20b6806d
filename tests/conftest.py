"""Shared test fixtures: paths to the real data beside the checkout."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CORPUS = SHARED / "fcs_corpus"
LEVINE = SHARED / "levine32"


LEVINE_UNNAMED = ("Monocytes", "CD16+_NK_cells")  # distinct bone-marrow populations unknown-cell tests leave unnamed


def levine_with_unnamed(per_population: int = 10, seed: int = 0):
    """Levine_32dim's arcsinh features, markers and population names, the populations named (all but LEVINE_UNNAMED),
    and `per_population` labelled rows of each named one (seeded) with their index into the named populations."""
    import pandas as pd

    df = pd.read_csv(LEVINE / "Levine_32dim_labeled30k_arcsinh.csv")
    markers = [c for c in df.columns if c not in ("label", "population", "split")]
    x, names = df[markers].to_numpy(np.float32), df["population"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    known = sorted(set(names) - set(LEVINE_UNNAMED))
    lab = np.sort(np.concatenate([rng.choice(np.flatnonzero(names == n), per_population, replace=False)
                                  for n in known]))
    return x, names, markers, known, lab, np.searchsorted(known, names[lab])


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch) -> Path:
    """A fresh workspace directory, also exported as CYTOAUTO_WORKSPACE for code that reads it."""
    path = tmp_path / "workspace"
    monkeypatch.setenv("CYTOAUTO_WORKSPACE", str(path))
    return path


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Streamlit's AppTest runs a page as `__main__` and leaves it there; Dask's spawned workers would then run
    that page on start-up. Every test gets back the `__main__` it started with."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
