"""Session files: export a dataset's state, import it into a fresh workspace holding the same data file."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import LEVINE, ROOT
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file
from cytoauto_core.io.marker_table import read_marker_table
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.session import cluster_store, export_session, import_session
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import ensure_demo
from cytoauto_core.tools.clustering.flowsom import ClusteringParams, FlowSOM
from cytoauto_core.tools.models.bundle import load_bundle

FCS = LEVINE / "Levine_32dim_10k.fcs"
SHIPPED_BUNDLE = ROOT / "models" / "demo_bone_marrow_vime"
TABLE = LEVINE / "knowledge_table" / "levine32_expected_expression.csv"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A worked-on Levine dataset (labels from the matched gating, a colour, a cofactor, a map, a clustering with a
    named cluster, a result) and its session file."""
    ws = Workspace(tmp_path_factory.mktemp("first"))
    dataset = read_file(FCS)
    key = ws.add_dataset(dataset)
    store = LabelStore(ws.labels_dir(key), dataset.n_cells)
    matched = pd.read_csv(LEVINE / "Levine_32dim_10k_matched_labels.csv")
    store.import_frame(matched.rename(columns={"row_in_fcs_0based": "cell_index"})[["cell_index", "population"]])
    store.recolor(store.populations()[0].id, "#123456")
    cd4 = next(p.id for p in store.populations() if p.name == "CD4_T_cells")
    memory = store.create_population("CD4 memory")
    store.assign(np.flatnonzero(store.labels() == cd4)[:40], memory, within=cd4)  # a gate within a gate
    spec = default_spec(dataset)
    spec.cofactors = {"CD3": 7.5}
    ws.save_settings(key, {"transform": spec.to_dict(), "map": "embedding-test"})
    x = transform_features(dataset, spec)
    ws.save_array(key, "embedding-test", x[:, :2].copy(), {"method": "pca", "description": "first two markers"})
    ws.save_array(key, "result-proba", np.full((dataset.n_cells, 3), 1 / 3, np.float32),
                  {"model": "vime", "bundle_dir": SHIPPED_BUNDLE.name, "class_ids": [0, 1, 2]})
    clusters = cluster_store(ws, key, dataset.n_cells)
    clusters.save(FlowSOM(ClusteringParams(n_clusters=8, grid=5, epochs=2, seed=0)).fit_predict(x), spec.features)
    clusters.rename([0], "T cells")
    ws.save_marker_table(key, read_marker_table(TABLE.read_bytes(), TABLE.name))
    data = export_session(ws, key, dataset, SHIPPED_BUNDLE)
    return ws, key, data


def test_a_session_restores_labels_settings_maps_clustering_and_model(exported, tmp_path):
    first, key, data = exported
    fresh = Workspace(tmp_path / "second")
    assert fresh.add_dataset(read_file(FCS)) == key, "the same data file gives the same dataset key"
    summary = import_session(fresh, io.BytesIO(data), "levine.cytosession")
    assert summary.key == key and summary.populations == 15 and summary.labelled_cells == 2_230
    n = first.load_dataset(key).n_cells
    before, after = LabelStore(first.labels_dir(key), n), LabelStore(fresh.labels_dir(key), n)
    assert [(p.name, p.color) for p in after.populations()] == [(p.name, p.color) for p in before.populations()]
    names = {p.id: p.name for p in after.populations()}
    assert {names.get(p.parent) for p in after.populations() if p.name == "CD4 memory"} == {"CD4_T_cells"}
    pd.testing.assert_frame_equal(after.to_frame(), before.to_frame())
    assert fresh.load_settings(key) == first.load_settings(key)
    np.testing.assert_array_equal(fresh.load_array(key, "embedding-test")[0],
                                  first.load_array(key, "embedding-test")[0])
    was, now = cluster_store(first, key, n).current(), cluster_store(fresh, key, n).current()
    np.testing.assert_array_equal(now.clusters, was.clusters)
    assert now.names == was.names and now.names[0] == "T cells" and now.features == was.features
    assert summary.bundle == SHIPPED_BUNDLE.name
    assert fresh.load_array(key, "result-proba")[1]["bundle_dir"] == summary.bundle
    assert load_bundle(str(fresh.models_dir / summary.bundle)).class_names, "the model bundle arrives verified"
    assert fresh.load_marker_table(key).to_dict() == first.load_marker_table(key).to_dict(), "the marker table travels too"


def test_importing_again_replaces_instead_of_adding(exported, tmp_path):
    _, key, data = exported
    fresh = Workspace(tmp_path / "again")
    fresh.add_dataset(read_file(FCS))
    import_session(fresh, io.BytesIO(data), "s.zip")
    summary = import_session(fresh, io.BytesIO(data), "s.zip")
    assert summary.labelled_cells == 2_230 and len(LabelStore(fresh.labels_dir(key), 10_000).populations()) == 15


def test_a_session_without_its_data_file_is_one_sentence(exported, tmp_path):
    _, _, data = exported
    with pytest.raises(CytoInputError, match=r"belongs to the dataset 'Levine_32dim_10k.fcs' \(10,000 cells\).*"
                                             r"load that data file first") as err:
        import_session(Workspace(tmp_path / "empty"), io.BytesIO(data), "levine.cytosession")
    assert "\n" not in str(err.value)


def _rewrite(data: bytes, replace: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
        for name, content in replace.items():
            if name not in src.namelist():
                dst.writestr(name, content)
    return out.getvalue()


def _pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}] * 10_000, dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, message", [
    ({"labels.npy": _pickled_npy()}, "damaged entry"),
    ({"bundle/weights.npz": b"not the saved weights"}, "has been modified"),
    ({"extra/run.py": b"print('hi')"}, "unexpected entry"),
    ({"bundle/.hidden": b"x"}, "unexpected entry"),
    ({"../run.py": b"print('hi')"}, r"cannot be imported: its entry '\.\./run\.py' points outside the archive\.$"),
    ({"labels.npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (10000000000,), }"
                    + b" " * 50 + b"\n"}, "damaged entry"),
    ({"session.json": b"{]"}, "not a session file"),
])
def test_a_damaged_session_is_refused_before_anything_is_written(exported, tmp_path, damage, message):
    _, key, data = exported
    fresh = Workspace(tmp_path / "damaged")
    fresh.add_dataset(read_file(FCS))
    with pytest.raises(CytoInputError, match=message):
        import_session(fresh, io.BytesIO(_rewrite(data, damage)), "bad.zip")
    assert fresh.load_settings(key) is None and not LabelStore(fresh.labels_dir(key), 10_000).populations()
    assert not list(fresh.models_dir.iterdir()), "no bundle and no staging folder is left behind"


def test_a_session_with_a_damaged_marker_table_is_refused(exported, tmp_path):
    _, key, data = exported
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("session.json"))
    manifest["marker_table"]["values"][0][0] = 7
    fresh = Workspace(tmp_path / "damaged-table")
    fresh.add_dataset(read_file(FCS))
    with pytest.raises(CytoInputError, match=r"^The session file 'bad.zip' holds a damaged marker table, so nothing"):
        import_session(fresh, io.BytesIO(_rewrite(data, {"session.json": json.dumps(manifest).encode()})), "bad.zip")
    assert fresh.load_marker_table(key) is None and fresh.load_settings(key) is None


def test_not_a_zip_is_one_sentence(tmp_path):
    with pytest.raises(CytoInputError, match="'notes.txt' is not a session file"):
        import_session(Workspace(tmp_path), io.BytesIO(b"just text"), "notes.txt")


def test_the_session_manifest_is_plain_json(exported):
    _, key, data = exported
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("session.json"))
        assert all(not n.endswith((".pkl", ".pickle")) for n in archive.namelist())
    assert manifest["dataset"]["key"] == key and manifest["settings"]["transform"]["cofactors"] == {"CD3": 7.5}


def test_data_page_opens_a_session_made_in_another_workspace(workspace_dir, tmp_path):
    other = Workspace(tmp_path / "colleague")
    key = ensure_demo(other)
    dataset = other.load_dataset(key)
    store = LabelStore(other.labels_dir(key), dataset.n_cells)
    store.assign(np.arange(0, 300), store.create_population("T cells", "#aa0000"))
    spec = default_spec(dataset)
    other.save_settings(key, {"transform": {**spec.to_dict(), "cofactor": 150.0}})
    data = export_session(other, key, dataset)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert any("arcsinh(x / 5)" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Prepare session file").click().run()
    assert not at.exception and len(at.get("download_button")) == 1, "this workspace's own session can be downloaded"
    at.file_uploader(key="session-upload").set_value(("colleague_session.zip", data, "application/zip")).run()
    next(b for b in at.button if b.label == "Open session").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("1 population(s), 300 labelled cells" in s.value for s in at.success)
    assert any("arcsinh(x / 150)" in m.value for m in at.markdown), "the colleague's transform settings are in use"
    mine = LabelStore(Workspace(workspace_dir).labels_dir(key), dataset.n_cells)
    assert [(p.name, p.color) for p in mine.populations()] == [("T cells", "#aa0000")]
