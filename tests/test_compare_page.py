"""AppTest of the Compare page on a real eight-sample COVID-19 study labelled by an LDA bundle."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SHARED
from cytoauto_core.prep.qc import reference_from
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study import samples
from cytoauto_core.tools.models.bundle import ModelBundle, predict_dataset, save_bundle
from cytoauto_core.tools.training import build_model
from ui.results import RESULT

COVID = SHARED / "devsuite" / "covid19_flow_wsp"
GATED = ["CD3+/CD4", "CD3+/CD8", "CD14 monocytes", "CD19"]


def _study(workspace_dir) -> tuple[str, pd.DataFrame]:
    """The 4 smallest ICU and 4 smallest ward files as one dataset, labelled by an LDA bundle trained on their
    FlowJo gates and stored as the app stores an applied model."""
    published = pd.read_csv(COVID / "samples.csv").sort_values("events")
    published = published.groupby("group_in_wsp_name").head(4).sort_values("fcs_file")
    paths = [COVID / "fcs" / name for name in published["fcs_file"]]
    dataset, keywords = samples.read_study(paths, [p.name for p in paths])
    labels = np.concatenate([pd.read_csv(COVID / "labels" / name, usecols=["label"])["label"]
                             .map({n: i for i, n in enumerate(GATED)}).fillna(-1).to_numpy(int)
                             for name in published["labels_file"]])
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    model = build_model("LDA", seed=0).fit(x[labels >= 0], labels[labels >= 0], x[labels < 0])
    bundle = ModelBundle(model, spec, [0, 1, 2, 3], GATED, name="LDA on gates",
                         params={**model.params_dict(), **reference_from(x, spec.features, dataset.sample_ids)
                                 .to_params()})
    workspace = Workspace(workspace_dir)
    bundle_hash = save_bundle(bundle, str(workspace.models_dir / "lda"))
    key = workspace.add_dataset(dataset)
    samples.save_keywords(workspace, key, keywords)  # as the Data page's upload does
    prediction = predict_dataset(bundle, dataset.events, dataset.channel_names, dataset.spillover)
    workspace.save_array(key, RESULT, prediction.probabilities, {
        "model": "LDA", "bundle_hash": bundle_hash, "bundle_dir": "lda", "class_ids": prediction.class_ids,
        "class_names": prediction.class_names, "threshold": 0.5, "seed": 0, "n_labelled": int((labels >= 0).sum()),
        "metrics": {}, "seconds": 0.0})
    return key, published


def _open(key: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    if key:
        at.query_params["dataset"] = key
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def test_one_sample_dataset_says_how_to_upload_a_study(workspace_dir):
    at = _open()
    [info] = at.info
    assert info.value.startswith("Comparing conditions needs several samples")


@pytest.mark.parametrize("pair", [False, True])
def test_upload_a_sample_table_and_compare_conditions(workspace_dir, pair):
    key, published = _study(workspace_dir)
    at = _open(key)
    assert at.info[0].value.startswith("Fill in each sample's condition")
    at.file_uploader[0].set_value(("study.csv", b"sample,condition\nnot_here.fcs,ICU\n", "text/csv")).run()
    next(b for b in at.button if b.label == "Use this table").click().run()
    assert [e.value for e in at.error] == ["'study.csv' names sample 'not_here.fcs', which is not in this dataset."]

    table = pd.DataFrame({"sample": published["fcs_file"], "condition": published["group_in_wsp_name"],
                          "patient": [f"p{i % 4}" if pair else "" for i in range(len(published))]})
    at.file_uploader[0].set_value(("study.csv", table.to_csv(index=False).encode(), "text/csv")).run()
    next(b for b in at.button if b.label == "Use this table").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = samples.load(Workspace(workspace_dir), key, published["fcs_file"].tolist())
    assert stored["condition"].tolist() == published["group_in_wsp_name"].tolist()

    boxes = {s.label: s.value for s in at.selectbox}
    assert boxes["Group samples by"] == "condition" and boxes["paired by"] == ("patient" if pair else "no pairing")
    quality, result = at.dataframe[-2].value, at.dataframe[-1].value
    assert quality["sample"].tolist() == published["fcs_file"].tolist()
    assert quality["mean_confidence"].between(0, 1).all() and not quality["drift_flag"].any()
    assert result["population"].tolist() == GATED
    assert result["p_adjusted"].between(0, 1).all() and (result["ci_low"] < result["ci_high"]).all()
    design = next(m.value for m in at.markdown if m.value.startswith("**Compare"))
    assert design == f"**Compare condition '{boxes['Compare condition']}' with '{boxes['with']}'" + \
        (", paired by patient.**" if pair else ".**")


def _bar_labels(at: AppTest) -> list[str]:
    """The x labels of the per-sample stacked bars."""
    bars = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "per sample" in c.proto.spec)
    return list(dict.fromkeys(x for trace in bars["data"] for x in trace["x"]))


def test_bars_name_samples_shortly_and_a_run_day_that_follows_the_condition_is_a_warning(workspace_dir):
    """80-character COVID file names squashed the bars; now they carry short names, which the user can fill from a
    file keyword. A run day that holds one condition each is confounded with it, and the page says so."""
    key, published = _study(workspace_dir)
    workspace = Workspace(workspace_dir)
    conditions = published["group_in_wsp_name"].tolist()
    table = samples.template(published["fcs_file"].tolist()).assign(
        condition=conditions, **{"run day": ["Tue" if c == "ICU" else "Fri" for c in conditions]})
    samples.save(workspace, key, samples.validate(table, published["fcs_file"].tolist()))
    at = _open(key)
    assert not at.error, [e.value for e in at.error]
    labels = _bar_labels(at)
    assert len(labels) == 8 and max(map(len, labels)) <= len("ICU · ") + samples.SHORT_NAME
    assert "ICU · 21_ICU_005_A 210420_080" in labels, labels
    [warning] = [w.value for w in at.warning]
    assert warning == ("Condition and run day split the compared samples identically (every 'ICU' sample has run day "
                       "'Tue', every 'W' sample has run day 'Fri'), so this comparison cannot tell an effect of "
                       "condition from an effect of run day; to separate them, the study needs samples of more than "
                       "one run day in each condition.")

    next(s for s in at.selectbox if s.label == "File keyword").set_value("TUBE NAME")
    next(s for s in at.selectbox if s.label == "Into column").set_value(samples.DISPLAY)
    next(b for b in at.button if b.label == "Fill in").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = samples.load(workspace, key, published["fcs_file"].tolist())
    assert stored[samples.DISPLAY].tolist()[:2] == ["ICU_005_A 210420", "W_027_O 210420"], \
        "TUBE NAME 'COVID19_ICU_005_A ST3 210420', shortened by what all of them share"
    assert "W · W_027_O 210420" in _bar_labels(at)
    assert stored["run day"].tolist() == table["run day"].tolist(), "the other columns are kept"
