"""Shared test fixtures: paths to the real data beside the checkout."""
from __future__ import annotations

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
