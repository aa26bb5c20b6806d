"""Shared test fixtures: paths to the real data beside the checkout."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CORPUS = SHARED / "fcs_corpus"
LEVINE = SHARED / "levine32"


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
