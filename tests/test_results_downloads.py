"""Results page downloads: AnnData and split FCS prepared from the page, and never a file made for another dataset."""
from __future__ import annotations

import io
import zipfile

import anndata
import h5py
import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import CORPUS, ROOT
from cytoauto_core.io import read_file
from cytoauto_core.store.workspace import Workspace

APP = str(ROOT / "app.py")
NAMES = ["T cells", "B cells", "NK cells"]


def _store_result(ws: Workspace, key: str, n: int, bundle_hash: str) -> None:
    """What the Train page stores after training: per-cell probabilities and what made them."""
    proba = np.random.default_rng(0).dirichlet(np.ones(3), n).astype(np.float32)
    ws.save_array(key, "result-proba", proba, {
        "model": "LDA", "bundle_hash": bundle_hash, "bundle_dir": bundle_hash[:16], "class_ids": [0, 1, 2],
        "class_names": NAMES, "threshold": 0.4, "seed": 3, "n_labelled": 30, "metrics": {}, "seconds": 1.0})


def _downloads(at: AppTest) -> set[str]:
    """Labels of the download buttons on the page."""
    return {element.proto.label for element in at.get("download_button")}


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_prepared_files_belong_to_their_dataset_and_model(workspace_dir):
    at = AppTest.from_file(APP, default_timeout=120).run()
    ws = Workspace(workspace_dir)
    [demo] = ws.list_datasets()
    other = ws.add_dataset(read_file(CORPUS / "flowio_G11.fcs"))
    _store_result(ws, demo.key, demo.n_cells, "a" * 64)
    _store_result(ws, other, 5_785, "b" * 64)

    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    _button(at, "Prepare CSV").click().run()
    _button(at, "Prepare AnnData (.h5ad)").click().run()
    assert not at.exception, at.exception
    offered = _downloads(at)
    assert {"Download labelled cells (CSV)", "Download AnnData (.h5ad)"} <= offered
    h5ad_bytes = at.session_state["results-prepared"]["h5ad"][1]
    with h5py.File(io.BytesIO(h5ad_bytes), "r") as f:
        adata = anndata.io.read_elem(f)
    assert adata.n_obs == demo.n_cells and adata.uns["cytoauto"]["bundle_hash"] == "a" * 64
    assert set(adata.obs["population"].cat.categories) <= set(NAMES) | {"unassigned"}

    at.query_params["dataset"] = other
    at.session_state["dataset"] = other
    at.run()
    assert not at.exception, at.exception
    assert "Download labelled cells (CSV)" not in _downloads(at), "a file prepared on the demo is never offered here"
    assert "Download AnnData (.h5ad)" not in _downloads(at)

    at.radio[-1].set_value("one per population (zip)").run()
    _button(at, "Prepare FCS").click().run()
    assert not at.exception, at.exception
    assert "Download labelled cells (zip of FCS)" in _downloads(at)
    with zipfile.ZipFile(io.BytesIO(at.session_state["results-prepared"]["fcs"][1])) as archive:
        names = archive.namelist()
    assert names[-1] == "legend.csv" and set(names[:-1]) <= {"T_cells.fcs", "B_cells.fcs", "NK_cells.fcs",
                                                              "unassigned.fcs"}
