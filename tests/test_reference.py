"""Calls compared with reference labels by name: cytoauto_core.tools.reference on Levine_32dim (its matched gating labels as
the reference), by hand, and the Results page's "Compare with reference labels" upload."""
from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from streamlit.testing.v1 import AppTest

from conftest import LEVINE, ROOT, SHARED
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file
from cytoauto_core.run.train_command import label_columns
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.tools.reference import compare_with_reference, reference_from_table
from ui.results import RESULT

APP = str(ROOT / "app.py")
MATCHED = LEVINE / "Levine_32dim_10k_matched_labels.csv"  # row_in_fcs_0based, label, population: 2,230 gated cells
THRESHOLD = 0.9  # confidence below which a cell is unassigned: some of the reference cells are


@pytest.fixture(scope="module")
def levine():
    """The Levine_32dim 10k FCS (no annotation column), and LDA fitted on the 30,000 gated cells of the labelled CSV:
    its probabilities for every cell of the FCS and its population names."""
    dataset = read_file(LEVINE / "Levine_32dim_10k.fcs")
    gated = pd.read_csv(LEVINE / "Levine_32dim_labeled30k_arcsinh.csv")
    markers = [c for c in gated.columns if c not in ("label", "population", "split")]
    lda = LinearDiscriminantAnalysis().fit(gated[markers].to_numpy(), gated["population"].to_numpy())
    proba = lda.predict_proba(dataset.events[:, dataset.channel_index(markers)])
    return dataset, proba, [str(c) for c in lda.classes_]


def test_levine_calls_against_its_matched_gating_labels(levine):
    dataset, proba, classes = levine
    table = pd.read_csv(MATCHED)
    guess = label_columns(table.columns)
    assert (guess.cell, guess.population, guess.first_index) == ("row_in_fcs_0based", "population", 0)
    reference = reference_from_table(table, guess.cell, guess.population, dataset.n_cells, guess.first_index)
    # the user's names spelled their own way (spaces for underscores), cells under 0.9 confidence unassigned
    called = np.array([c.replace("_", " ") for c in classes], dtype=object)[proba.argmax(axis=1)]
    called[proba.max(axis=1) < THRESHOLD] = "unassigned"

    found = compare_with_reference(called, reference)

    assert found.reference_cells == len(table) == 2_230
    assert found.agreement > 0.95 and found.precision > found.agreement, "unassigned calls lower agreement only"
    conf = found.confusion
    assert conf.columns[-1] == "unassigned" and conf["unassigned"].sum() == found.reference_cells - found.called_cells
    assert set(conf.index) == set(table["population"]) and conf.to_numpy().sum() == 2_230
    assert conf.columns[0] == "CD4 T cells" and conf.index[0] == "CD4_T_cells", "largest first, matched by name"
    diagonal = np.array([conf.loc[r, c] for r, c in zip(conf.index, conf.columns)])
    per_population = found.per_population.set_index("population")
    np.testing.assert_array_equal(per_population.loc[conf.index, "cells"], conf.sum(axis=1))
    np.testing.assert_allclose(per_population.loc[conf.index, "agreement"], diagonal / conf.sum(axis=1))
    assert diagonal.sum() == round(found.agreement * 2_230)


def test_agreement_precision_and_confusion_by_hand():
    reference = ["A", "A", "B", "B", "", "unassigned", "B"]
    predicted = ["a", "B", "B", "unknown", "A", "A", "unassigned"]
    found = compare_with_reference(predicted, reference)
    assert found.reference_cells == 5 and found.called_cells == 3
    assert found.agreement == pytest.approx(2 / 5), "cells 0 and 2; unknown and unassigned calls disagree"
    assert found.precision == pytest.approx(2 / 3), "of the named calls a, B, B on reference cells"
    assert found.confusion.to_dict(orient="index") == {
        "B": {"B": 1, "a": 0, "unassigned": 1, "unknown": 1}, "A": {"B": 1, "a": 1, "unassigned": 0, "unknown": 0}}
    assert list(found.confusion.columns) == ["B", "a", "unassigned", "unknown"]


def test_a_reference_table_is_read_like_a_label_import():
    table = pd.DataFrame({"event": [1, 3, 3], "gate": ["T", "B", ""]})
    names = reference_from_table(table, "event", "gate", n_cells=3, first_index=1)
    assert names.tolist() == ["T", "", "B"], "1-based; a row without a population is skipped"
    with pytest.raises(CytoInputError, match=r"not cell indices 0–2 of this dataset \(0-based\)"):
        reference_from_table(table, "event", "gate", n_cells=3, first_index=0)
    with pytest.raises(CytoInputError, match="names some cells twice"):
        reference_from_table(pd.DataFrame({"event": [1, 1], "gate": ["T", "B"]}), "event", "gate", 3, 1)


def test_results_page_compares_an_uploaded_reference_csv(levine, workspace_dir):
    """A gating CSV uploaded on the Results page of a file without annotations: its columns guessed, agreement and
    precision shown, and the confusion matrix drawn by reference population and the model's calls."""
    dataset, proba, classes = levine
    at = AppTest.from_file(APP, default_timeout=180).run()
    ws = Workspace(workspace_dir)
    key = ws.add_dataset(dataset)
    ws.save_array(key, RESULT, proba.astype(np.float32), {
        "model": "LDA", "bundle_hash": "c" * 64, "bundle_dir": "c" * 16, "class_ids": list(range(len(classes))),
        "class_names": classes, "threshold": THRESHOLD, "seed": 0, "n_labelled": 0, "metrics": {}, "seconds": 0.0})
    at.query_params["dataset"] = key
    at.session_state["dataset"] = key
    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception

    uploader = next(u for u in at.file_uploader if u.label == "Reference labels (CSV)")
    uploader.set_value(("gating.csv", MATCHED.read_bytes(), "text/csv")).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    picked = {s.label: s.value for s in at.selectbox}
    assert picked["Cell index column"] == "row_in_fcs_0based" and picked["Reference population column"] == "population"
    shown = {m.label: m.value for m in at.metric}
    agreement, precision = (float(shown[k].rstrip("%")) for k in ("Agreement with the reference",
                                                                      "Precision of the calls"))
    assert 95 < agreement < precision
    assert shown["Reference cells"] == "2,230"
    [chart] = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "reference-csv" in c.proto.id]
    assert "rows: reference" in chart["layout"]["title"]["text"]
    [heatmap] = chart["data"]
    assert heatmap["y"][0] == "CD4_T_cells" and heatmap["x"][0] == "CD4_T_cells" and heatmap["x"][-1] == "unassigned"
    assert heatmap["colorbar"]["title"]["text"] == "Cells"
    z = heatmap["z"]  # plotly's typed array: dtype, base64 bytes, shape
    counts = np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"]).reshape([int(n) for n in z["shape"].split(",")])
    assert counts.shape == (14, 15) and counts.sum() == 2_230, "14 reference populations × their 14 names, unassigned"


def test_results_page_compares_flowjo_gates_as_the_reference(workspace_dir):
    """The mouse BAL file's FlowJo workspace as the reference: its leaf gates applied to the loaded file as the Label
    page's import applies them, against calls that follow the gates but name populations the user's way and leave
    the 6 DP T cells unassigned."""
    bal = SHARED / "devsuite" / "flowsom_mouse_bal_wsp"
    gated = pd.read_csv(bal / "68983.labels.csv.gz")["label"].to_numpy()  # each cell's leaf gate, or 'ungated'
    classes = sorted(set(gated) - {"ungated", "DP T cells"})
    proba = np.full((len(gated), len(classes)), 1 / len(classes), np.float32)  # under 0.5: unassigned
    for i, name in enumerate(classes):
        proba[gated == name] = np.eye(len(classes), dtype=np.float32)[i]
    at = AppTest.from_file(APP, default_timeout=180).run()
    ws = Workspace(workspace_dir)
    key = ws.add_dataset(read_file(bal / "68983.fcs"))
    ws.save_array(key, RESULT, proba, {
        "model": "LDA", "bundle_hash": "d" * 64, "bundle_dir": "d" * 16, "class_ids": list(range(len(classes))),
        "class_names": [c.replace(" ", "_") for c in classes], "threshold": 0.5, "seed": 0, "n_labelled": 0,
        "metrics": {}, "seconds": 0.0})
    at.query_params["dataset"] = key
    at.session_state["dataset"] = key
    at.switch_page("pages/results.py").run()

    uploader = next(u for u in at.file_uploader if u.label.startswith("FlowJo workspace"))
    uploader.set_value(("gating.wsp", (bal / "gating.wsp").read_bytes(), "application/xml")).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    shown = {m.label: m.value for m in at.metric}
    gated_cells = int((gated != "ungated").sum())
    assert shown["Reference cells"] == f"{gated_cells:,}"
    assert shown["Agreement with the reference"] == f"{(gated_cells - 6) / gated_cells:.1%}"
    assert shown["Precision of the calls"] == "100.0%"
    [chart] = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "reference-wsp" in c.proto.id]
    [heatmap] = chart["data"]
    assert heatmap["y"][0] == "CD4 T cells" and heatmap["x"][0] == "CD4_T_cells" and heatmap["x"][-1] == "unassigned"
