"""The README's Python API block runs as written: read → transform → map → cluster → train → apply → export."""
from __future__ import annotations

import re

import anndata
import flowio
import numpy as np

from conftest import ROOT
from cytoauto_core.demo import make_demo
from cytoauto_core.io import write_fcs


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Using the core from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_snippet_runs(tmp_path, monkeypatch):
    write_fcs(tmp_path / "sample.fcs", make_demo(3_000, seed=1))
    write_fcs(tmp_path / "next_sample.fcs", make_demo(2_000, seed=2))
    monkeypatch.chdir(tmp_path)
    code = _readme_block()
    assert len([ln for ln in code.splitlines() if ln.strip() and not ln.startswith(("from ", "import "))]) <= 15
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)

    assert scope["clusters"].shape == (3_000,) and 2 <= len(np.unique(scope["clusters"])) <= 20
    fcs = flowio.FlowData(str(tmp_path / "next_sample_labelled.fcs"))
    ids = fcs.as_array(preprocess=False)[:, fcs.pnn_labels.index("population_id")]
    np.testing.assert_array_equal(ids, scope["p"].labels)
    adata = anndata.read_h5ad(tmp_path / "sample_labelled.h5ad")
    assert adata.obsm["X_pca"].shape == (3_000, 2) and adata.n_vars == len(scope["spec"].features)
    truth = adata.obs["annotation_population"].astype(str).to_numpy()
    predicted = adata.obs["population"].astype(str).to_numpy()
    assert (predicted == truth)[truth != "unassigned"].mean() > 0.8, "10 labels per population label the demo well"
