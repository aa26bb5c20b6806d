"""AnnData export and upload: every field a scanpy user reads, opened with anndata itself, and the same events back."""
from __future__ import annotations

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import CORPUS
from cytoauto_core.base.dataset import UNASSIGNED, event_ids
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.io import read_file, read_files
from cytoauto_core.io.export import write_labelled_h5ad
from cytoauto_core.io.h5ad import UNASSIGNED_COLOR
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import make_demo
from ui.upload import store_uploads

NAMES = {0: "T cells", 1: "B cells", 2: "NK cells", 3: "never predicted"}
COLORS = {0: "#1f77b4", 1: "#ff7f0e", 2: "#2ca02c", 3: "#d62728"}


def _result(n: int, seed: int = 0) -> tuple[LabelledCells, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Predicted ids (some unassigned, population 3 never predicted), user labels, novelty and three maps."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, 3, n).astype(np.int32)
    user = np.where(rng.random(n) < 0.05, rng.integers(0, 4, n), -1).astype(np.int16)
    cells = LabelledCells(ids, dict(NAMES), rng.random(n).astype(np.float32), novelty=rng.random(n).astype(np.float32))
    maps = {key: rng.normal(size=(n, 2)).astype(np.float32) for key in ("X_umap", "X_tsne", "X_pca")}
    return cells, user, cells.novelty, maps


@pytest.fixture(scope="module")
def flow_export(tmp_path_factory):
    """A real flow file with a spillover matrix, two samples, exported with a full result."""
    source = read_files([CORPUS / "flowio_G11.fcs", CORPUS / "flowio_G11.fcs"], ["a.fcs", "b.fcs"])
    spec = default_spec(source)
    x = transform_features(source, spec)
    cells, user, novelty, maps = _result(source.n_cells)
    path = tmp_path_factory.mktemp("h5ad") / "result.h5ad"
    write_labelled_h5ad(path, source, spec, cells, x=x, user_labels=user, colors=COLORS, maps=maps,
                        provenance={"model": "LDA", "bundle_hash": "f" * 64, "seed": 7, "threshold": 0.5})
    return source, spec, x, cells, user, novelty, maps, path


def test_export_opens_in_anndata_with_every_field(flow_export):
    source, spec, x, cells, user, novelty, maps, path = flow_export
    adata = anndata.read_h5ad(path)
    features = source.channel_index(spec.features)
    assert adata.shape == (source.n_cells, len(spec.features)) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X, x)
    np.testing.assert_array_equal(adata.layers["raw"], source.events[:, features])
    assert adata.var["channel"].tolist() == spec.features
    assert adata.var["marker"].tolist() == [source.channels[i].marker for i in features]
    assert adata.var["kind"].tolist() == [source.channels[i].kind for i in features]
    expected_cofactor = [np.nan if f in spec.linear else spec.cofactor for f in spec.features]
    np.testing.assert_array_equal(adata.var["cofactor"].to_numpy(), expected_cofactor)

    obs = adata.obs
    assert obs["sample"].cat.categories.tolist() == source.samples
    np.testing.assert_array_equal(obs["sample"].cat.codes, source.sample_ids)
    half = source.n_cells // 2
    np.testing.assert_array_equal(obs["event_id"], np.r_[np.arange(half), np.arange(half)])
    predicted = obs["population"]
    assert predicted.dtype == "category"
    assert predicted.cat.categories.tolist() == ["T cells", "B cells", "NK cells", UNASSIGNED]
    assert (predicted.astype(str).to_numpy() == cells.population_names()).all()
    assert adata.uns["population_colors"].tolist() == [COLORS[0], COLORS[1], COLORS[2], UNASSIGNED_COLOR]
    labelled = user >= 0
    assert obs["user_label"].isna().to_numpy().tolist() == (~labelled).tolist()
    assert (obs["user_label"].astype(str).to_numpy()[labelled] == np.array([NAMES[i] for i in user[labelled]])).all()
    assert len(adata.uns["user_label_colors"]) == len(obs["user_label"].cat.categories)
    np.testing.assert_array_equal(obs["confidence"], cells.confidence)
    np.testing.assert_array_equal(obs["novelty"], novelty)
    for key, coords in maps.items():
        np.testing.assert_array_equal(adata.obsm[key], coords)

    transform = adata.uns["transform"]
    assert transform["features"].tolist() == spec.features and transform["cofactor"] == spec.cofactor
    assert bool(transform["compensate"]) == spec.compensate
    provenance = adata.uns["cytoauto"]
    assert provenance["bundle_hash"] == "f" * 64 and provenance["seed"] == 7 and provenance["model"] == "LDA"
    assert {"anndata", "numpy", "pandas", "cytoauto"} <= set(provenance["versions"])
    assert adata.uns["spillover"]["channels"].tolist() == source.spillover.channels


def test_uploaded_export_gives_the_same_events(flow_export, tmp_path):
    source, _, _, cells, _, _, _, path = flow_export
    ws = Workspace(tmp_path / "ws")
    with open(path, "rb") as handle:
        key = store_uploads(ws, [("result.h5ad", handle)])
    back = ws.load_dataset(key)
    assert back.channel_names == source.channel_names
    assert [(c.marker, c.kind, c.is_feature) for c in back.channels] == [
        (c.marker, c.kind, c.is_feature) for c in source.channels]
    np.testing.assert_array_equal(back.events, source.events)
    assert back.samples == source.samples
    np.testing.assert_array_equal(back.sample_ids, source.sample_ids)
    np.testing.assert_allclose(back.spillover.matrix, source.spillover.matrix)
    assert (back.annotations["population"].to_numpy() == cells.population_names()).all()
    assert "user_label" in back.annotations and back.warnings == []


def test_demo_annotations_survive_and_event_ids_count_within_each_sample(tmp_path):
    ds = make_demo(2_000, seed=4)
    spec = default_spec(ds)
    path = write_labelled_h5ad(tmp_path / "demo.h5ad", ds, spec, None)
    back = read_file(path)
    np.testing.assert_array_equal(back.events, ds.events)
    assert (back.annotations["population"] == ds.annotations["population"].astype(str)).all()
    np.testing.assert_array_equal(event_ids(np.array([1, 0, 1, 1, 0, 2])), [0, 0, 1, 2, 1, 0])


def test_foreign_anndata_without_raw_layer(tmp_path):
    """A scanpy-style file: X only, a numeric and a categorical obs column, marker names as var_names."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    with pd.option_context("future.infer_string", False):
        obs = pd.DataFrame({"leiden": pd.Categorical(rng.integers(0, 3, 300).astype(str)),
                            "n_events": rng.integers(0, 9, 300).astype(np.float64)},
                           index=pd.Index([f"c{i}" for i in range(300)], dtype=object))
        adata = anndata.AnnData(x, obs=obs, var=pd.DataFrame(index=pd.Index(["CD3", "CD4", "CD8"], dtype=object)))
        adata.write_h5ad(tmp_path / "scanpy.h5ad")
    ds = read_file(tmp_path / "scanpy.h5ad")
    assert ds.channel_names == ["CD3", "CD4", "CD8", "n_events"] and ds.feature_names == ["CD3", "CD4", "CD8"]
    np.testing.assert_array_equal(ds.events[:, :3], x)
    np.testing.assert_array_equal(ds.events[:, 3], obs["n_events"])
    assert (ds.annotations["leiden"].to_numpy() == obs["leiden"].astype(str).to_numpy()).all()
    assert len(ds.warnings) == 1 and "no 'raw' layer" in ds.warnings[0]


def test_a_relative_path_is_read_from_the_callers_folder(tmp_path, monkeypatch):
    """The capped reader runs in the package's folder; a path relative to where the user stands still finds the file."""
    with pd.option_context("future.infer_string", False):
        var = pd.DataFrame(index=pd.Index(["CD3", "CD4"], dtype=object))
        obs = pd.DataFrame(index=pd.Index([f"c{i}" for i in range(20)], dtype=object))
        anndata.AnnData(np.ones((20, 2), np.float32), obs=obs, var=var).write_h5ad(tmp_path / "relative.h5ad")
    monkeypatch.chdir(tmp_path)
    assert read_file("relative.h5ad").n_cells == 20


def test_unusable_h5ad_files_are_one_sentence(tmp_path):
    text = tmp_path / "fake.h5ad"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(CytoInputError, match=r"^'fake.h5ad' is not an AnnData file \(it is not HDF5\)\.$"):
        read_file(text)
    with h5py.File(tmp_path / "plain.h5ad", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(CytoInputError, match=r"^'plain.h5ad' is not an AnnData \.h5ad file \(it holds no X") as info:
        read_file(tmp_path / "plain.h5ad")
    assert "\n" not in str(info.value) and str(info.value).endswith(").")
