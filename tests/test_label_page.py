"""AppTests of the Label page: FlowJo gates and mapped CSV columns become labels (an import says what it changed), the
population tree, the biaxial plot and its median heatmap, and a map being computed."""
from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SHARED
from cytoauto_core.run.jobs import JobManager
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace

BAL = SHARED / "devsuite" / "flowsom_mouse_bal_wsp"
COVID = SHARED / "devsuite" / "covid19_flow_wsp"
# flowsom_mouse_bal_wsp/README.md, "Counts (`label`, FlowKit)"
BAL_COUNTS = {"CD4 T cells": 7_482, "B cells": 2_460, "gd T cells": 1_470, "CD8 T cells": 1_407, "NK T cells": 535,
              "NK cells": 312, "DN T cells": 267, "DP T cells": 6}


def _label_page(at: AppTest) -> AppTest:
    at.switch_page("pages/label.py").run()
    assert not at.exception, at.exception
    return at


def _upload_bal(workspace_dir) -> tuple[AppTest, str]:
    """The Data page loads 68983.fcs as a user would; returns the app and the dataset's key."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.file_uploader[0].set_value(("68983.fcs", (BAL / "68983.fcs").read_bytes(), "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Load files").click().run()
    assert not at.error, [e.value for e in at.error]
    [record] = [r for r in Workspace(workspace_dir).list_datasets() if r.name == "68983.fcs"]
    return _label_page(at), record.key


def _store(workspace_dir, key: str, n_cells: int) -> LabelStore:
    return LabelStore(Workspace(workspace_dir).labels_dir(key), n_cells)


def _uploader(at: AppTest, label: str):
    return next(u for u in at.file_uploader if u.label.startswith(label))


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_flowjo_workspace_leaf_gates_become_the_readme_labels(workspace_dir):
    at, key = _upload_bal(workspace_dir)
    _uploader(at, "FlowJo workspace").set_value(("gating.wsp", (BAL / "gating.wsp").read_bytes(), "text/xml")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [gates] = [m for m in at.multiselect if m.label == "Gates that become populations"]
    assert len(gates.options) == 15 and [g.rsplit("/", 1)[-1] for g in gates.value] == [
        "NK cells", "NK T cells", "B cells", "CD4 T cells", "CD8 T cells", "DN T cells", "DP T cells", "gd T cells"]
    _button(at, "Import gates").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    counts = _store(workspace_dir, key, 19_225).counts().set_index("name")["cells"].to_dict()
    assert counts == BAL_COUNTS
    [done] = [s.value for s in at.success if "gates of 'gating.wsp'" in s.value]
    assert done.startswith("Labelled 13,939 cells from 8 gates of 'gating.wsp' (7,482 CD4 T cells, 2,460 B cells")
    assert done.endswith("267 DN T cells, 6 DP T cells). No cell lies in two chosen gates.")
    table = at.dataframe[0].value.set_index("name")
    assert table.at["CD4 T cells", "cells"] == 7_482 and table.at["CD4 T cells", "% of all"] == 38.92, \
        "the README's 38.92 %"
    _button(at, "Import gates").click().run()
    [again] = [s.value for s in at.success if "gates of 'gating.wsp'" in s.value]
    assert again.startswith("Nothing changed: the 13,939 cells from 8 gates of 'gating.wsp' (7,482 CD4 T cells, ")
    assert "cells) already carry these labels. No cell lies" in again, "a re-import is not a failed one"


def test_parent_gates_sampled_per_gate_with_a_seed_and_overlaps_counted(workspace_dir):
    at, key = _upload_bal(workspace_dir)
    _uploader(at, "FlowJo workspace").set_value(("gating.wsp", (BAL / "gating.wsp").read_bytes(), "text/xml")).run()
    [gates] = [m for m in at.multiselect if m.label == "Gates that become populations"]
    gates.set_value(["Lymphocytes/Singlets/Singlets2/NK1_1+", "Lymphocytes/Singlets/Singlets2/NK1_1+/NK cells"]).run()
    next(n for n in at.number_input if n.label == "Cells per gate (0 = all)").set_value(50).run()
    _button(at, "Import gates").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = _store(workspace_dir, key, 19_225)
    assert store.counts().set_index("name")["cells"].to_dict() == {"NK1_1+": 50}
    [done] = [s.value for s in at.success if "gates of 'gating.wsp'" in s.value]
    assert done.endswith(" 312 cells lie in two or more chosen gates and stay unlabelled."), \
        "every NK cell is also in NK1_1+: 923 - 312 = 611 cells remain for NK1_1+"
    first = store.labels().copy()
    store.delete(store.populations()[0].id)
    _button(at, "Import gates").click().run()
    assert np.array_equal(_store(workspace_dir, key, 19_225).labels() >= 0, first >= 0), "the same seed, the same cells"


def test_a_workspace_that_does_not_describe_the_file_or_whose_gates_cannot_apply_is_one_sentence(workspace_dir):
    at, key = _upload_bal(workspace_dir)
    wsp = next(COVID.glob("*.wsp"))
    _uploader(at, "FlowJo workspace").set_value((wsp.name, wsp.read_bytes(), "text/xml")).run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith(f"'68983.fcs' is not a sample of the FlowJo workspace '{wsp.name}' (it describes ")
    assert "\n" not in error.value
    _uploader(at, "FlowJo workspace").set_value(("broken.wsp", b"<not xml", "text/xml")).run()
    assert [e.value for e in at.error][0].startswith("'broken.wsp' is not a readable FlowJo workspace")
    elsewhere = (BAL / "gating.wsp").read_text().replace('data-type:name="FSC-W"', 'data-type:name="FSC-X"')
    _uploader(at, "FlowJo workspace").set_value(("other_panel.wsp", elsewhere.encode(), "text/xml")).run()
    assert not at.error, "its gates are listed; applying them is what fails"
    _button(at, "Import gates").click().run()
    [error] = at.error
    assert error.value.startswith("The gates of 'other_panel.wsp' could not be applied to '68983.fcs' (FSC-X is not "
                                  "found as a channel")
    assert (_store(workspace_dir, key, 19_225).labels() < 0).all(), "nothing is half imported"


def test_labels_csv_with_its_own_column_names_and_one_based_indices(workspace_dir):
    at = _label_page(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run())
    key = at.query_params["dataset"]
    key = key[0] if isinstance(key, list) else key
    csv = pd.DataFrame({"gate": ["B", "B", "T", "T"], "Event #": [1, 2, 3, 20_000]}).to_csv(index=False).encode()
    _uploader(at, "Import labels CSV").set_value(("flowjo_export.csv", csv, "text/csv")).run()
    selects = {s.label: s for s in at.selectbox}
    assert selects["Cell index column"].value == "gate", "without a 'cell_index' column the first is proposed"
    selects["Cell index column"].set_value("Event #")
    selects["Population column"].set_value("gate")
    _button(at, "Import file").click().run()
    [error] = at.error
    assert error.value == ("The label file's column 'Event #' has values that are not cell indices 0–19,999 "
                           "of this dataset (0-based).")
    next(r for r in at.radio if r.label == "First cell is").set_value(1)
    _button(at, "Import file").click().run()
    assert not at.error and "Imported labels for 4 cells from 'flowjo_export.csv'." in [s.value for s in at.success]
    store = _store(workspace_dir, key, 20_000)
    names = {p.id: p.name for p in store.populations()}
    labels = store.labels()
    assert [names[i] for i in labels[[0, 1, 2, 19_999]]] == ["B", "B", "T", "T"] and (labels >= 0).sum() == 4


def test_biaxial_plot_density_default_axes_restriction_tree_and_svg(workspace_dir):
    at = _label_page(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run())
    key = at.query_params["dataset"]
    key = key[0] if isinstance(key, list) else key
    store = _store(workspace_dir, key, 20_000)
    lymph = store.create_population("Lymphocytes")
    store.assign(np.arange(0, 8_000), lymph)
    t = store.create_population("T cells")
    store.assign(np.arange(0, 2_000), t, within=lymph)

    at.run()
    assert at.radio[0].value == "Marker vs marker", "without a map the page opens on the biaxial plot"
    selects = {s.label: s for s in at.selectbox}
    [caption] = [c.value for c in at.caption if c.value.startswith("Default axes:")]
    assert caption.startswith(f"Default axes: {selects['x marker'].value} and {selects['y marker'].value}, the two "
                              "markers with the widest spread")
    assert selects["x marker"].value != selects["y marker"].value
    chart, medians = at.get("plotly_chart")
    axis = json.loads(medians.proto.spec)["layout"]["xaxis"]
    assert axis["ticktext"] == axis["tickvals"] == list(selects["x marker"].options), \
        "every marker is named under the heatmap, not every other one"
    spec = json.loads(chart.proto.spec)
    assert [t["type"] for t in spec["data"]] == ["scattergl"], "one trace: lasso and box keep working"
    assert spec["data"][0]["marker"]["colorscale"][0][1] == "rgb(0,0,131)", "density in Jet pseudocolour"
    assert len(spec["data"][0]["x"]["bdata"]) > 0

    selects["Show only cells of"].set_value(lymph).run()
    chart = at.get("plotly_chart")[0]
    assert "Only Lymphocytes and its sub-populations (8,000 cells)" == json.loads(chart.proto.spec)["layout"]["title"]["text"]
    next(r for r in at.radio if r.label == "Download format").set_value("SVG").run()
    assert all(json.loads(c.proto.config)["toImageButtonOptions"]["format"] == "svg" for c in at.get("plotly_chart"))

    table = at.dataframe[0].value
    assert table["name"].tolist() == ["Lymphocytes", "↳ T cells"]
    assert table["cells"].tolist() == [8_000, 2_000]
    assert table["% of all"].tolist() == [40.0, 10.0] and table["% of parent"].tolist() == [40.0, 25.0]


def test_the_label_map_can_be_coloured_by_a_marker_or_an_annotation_while_lassoing(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    key = at.query_params["dataset"]
    key = key[0] if isinstance(key, list) else key
    coords = np.random.default_rng(0).normal(size=(20_000, 2)).astype(np.float32)
    Workspace(workspace_dir).save_array(key, "embedding-test", coords, {"method": "pca", "description": "PCA test map"})
    _label_page(at)
    assert at.radio[0].value == "Map", "with a map the page opens on it"
    colour = next(s for s in at.selectbox if s.label == "Colour by")
    assert colour.value == "labels"
    colour.set_value("marker: CD3").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["type"] for t in spec["data"]] == ["scattergl"] and spec["data"][0]["marker"]["showscale"]
    next(s for s in at.selectbox if s.label == "Colour by").set_value("annotation: population").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    legend = [t["name"] for t in spec["data"][1:]]
    assert "Basophils" in legend and all(t["x"] == [None] for t in spec["data"][1:]), \
        "the legend is drawn by empty traces, so a lasso still reads the one trace of cells"


def test_importing_an_annotation_again_says_nothing_changed(workspace_dir):
    at = _label_page(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run())
    _button(at, "Import from annotation").click().run()
    [done] = [s.value for s in at.success]
    assert done.startswith("Labelled ") and done.endswith(" cells from 'population' (seed 0).")
    _button(at, "Import from annotation").click().run()
    [again] = [s.value for s in at.success]
    assert again == (f"Nothing changed: the {done.split()[1]} cells from 'population' (seed 0) already carry "
                     "these labels."), "a re-import is not a failed one"


def test_while_a_map_is_computed_the_label_page_says_so_with_its_progress(workspace_dir, monkeypatch):
    jobs = JobManager()
    monkeypatch.setattr("ui.state.job_manager", lambda: jobs)
    at = _label_page(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run())
    key = at.query_params["dataset"]
    key = key[0] if isinstance(key, list) else key
    release = threading.Event()
    jobs.start(f"embed-{key}", "UMAP map", lambda progress, should_stop: release.wait(60))
    try:
        at.run()
        assert not at.exception, at.exception
        [info] = [i.value for i in at.info if "being computed" in i.value]
        assert info.startswith("A map of this dataset is being computed (started on the **Map** page)")
        assert [p.text.split(":")[0] for p in at.get("progress")] == ["UMAP map"], "the job's own progress bar"
        next(r for r in at.radio if r.label == "Select on").set_value("Map").run()
        assert not any("Compute a map" in i.value for i in at.info), "no 'no map' while one is computed"
    finally:
        release.set()
