"""AppTest of unknown cells on the Results page, on the demo with Monocytes left unnamed: their own colour and count,
a level changed without retraining, and a compact group made a new population through the label store."""
from __future__ import annotations

import json

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.base.dataset import UNKNOWN_ID
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.tools.models.bundle import ModelBundle, predict_dataset, save_bundle
from cytoauto_core.tools.models.novelty import fit_novelty
from cytoauto_core.tools.training import build_model
from ui.plots import UNASSIGNED_COLOR, UNKNOWN_COLOR
from ui.results import RESULT

APP = str(ROOT / "app.py")
HIDDEN = "Monocytes"
LEVEL = 0.01
UNKNOWN_LABEL = "Unknown (unlike every named population)"


def _train(workspace_dir, novelty: bool = True) -> tuple[str, np.ndarray, np.ndarray]:
    """Open the app (it makes the demo), label 10 cells of every demo population but HIDDEN, fit LDA (with unknown
    detection unless `novelty` is False), store its result and a map as the app does; the key, truth and
    prediction."""
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    ws = Workspace(workspace_dir)
    [record] = ws.list_datasets()
    dataset = ws.load_dataset(record.key)
    truth = dataset.annotations["population"].astype(str).to_numpy()
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    known = sorted(set(truth) - {HIDDEN, "unassigned"})
    rng = np.random.default_rng(0)
    store = LabelStore(ws.labels_dir(record.key), dataset.n_cells)
    lab = []
    for name in known:
        cells = rng.choice(np.flatnonzero(truth == name), 10, replace=False)
        store.assign(cells, store.create_population(name))
        lab.append(cells)
    lab = np.sort(np.concatenate(lab))
    ids = [p.id for p in store.populations()]
    y = store.labels()[lab].astype(np.int64)
    model = build_model("LDA", seed=0).fit(x[lab], y, np.delete(x, lab, axis=0))
    bundle = ModelBundle(model, spec, ids, known, name="LDA", novelty=fit_novelty(x[lab], y, LEVEL, seed=0)
                         if novelty else None)
    bundle_hash = save_bundle(bundle, str(ws.models_dir / "lda"))
    prediction = predict_dataset(bundle, dataset.events, dataset.channel_names, dataset.spillover)
    stored = prediction.probabilities if not novelty else np.column_stack([prediction.probabilities,
                                                                           prediction.novelty])
    ws.save_array(record.key, RESULT, stored.astype(np.float32), {
        "model": "LDA", "bundle_hash": bundle_hash, "bundle_dir": "lda", "class_ids": prediction.class_ids,
        "class_names": prediction.class_names, "threshold": 0.5, "rejection": LEVEL if novelty else 0.0, "seed": 0,
        "n_labelled": int(lab.size), "metrics": {}, "seconds": 0.0, "trained_at": 1.0})
    ws.save_array(record.key, "embedding-test", x[:, :2].copy(), {"method": "pca", "description": "test map"})
    return record.key, truth, prediction.labels


def _results(key: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["dataset"] = key
    at.run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    return at


def _metric(at: AppTest, label: str):
    return next(m for m in at.metric if m.label == label)


def _level(at: AppTest):
    """The 'Unknown cells' level beside the confidence threshold (looked up afresh after every run)."""
    return next(s for s in at.selectbox if s.label == "Unknown cells")


def _chart(at: AppTest, title_part: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title_part in str(spec["layout"].get("title", "")) or title_part == "":
            return spec
    raise AssertionError(f"no chart titled {title_part!r}")


def test_unknown_cells_have_their_colour_count_and_level_and_a_group_becomes_a_population(workspace_dir):
    key, truth, labels = _train(workspace_dir)
    n_unknown = int((labels == UNKNOWN_ID).sum())
    assert (labels[truth == HIDDEN] == UNKNOWN_ID).mean() > 0.5
    at = _results(key)
    unknown = _metric(at, UNKNOWN_LABEL)
    assert unknown.proto.delta == f"{n_unknown:,} cells"
    assert _metric(at, "Unassigned (low confidence)").proto.delta.endswith(" cells")

    populations = _chart(at, "")  # the first chart: predicted populations on the map
    legend = {t["name"]: t["marker"]["color"] for t in populations["data"] if t.get("name")}
    assert legend["unknown"] == UNKNOWN_COLOR and legend["unassigned"] == UNASSIGNED_COLOR
    bars = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "Population share" in json.dumps(json.loads(c.proto.spec)["layout"].get("title", "")))
    assert {t["name"]: t["marker"]["color"] for t in bars["data"]}["unknown"] == UNKNOWN_COLOR

    assert _level(at).value == LEVEL
    _level(at).set_value(0.05).run()
    assert int(_metric(at, UNKNOWN_LABEL).proto.delta.split()[0].replace(",", "")) > n_unknown
    _level(at).set_value(0.0).run()
    assert _metric(at, UNKNOWN_LABEL).value == "0.0%"
    assert any(c.value == "No cell is unknown at this level." for c in at.caption)
    _level(at).set_value(LEVEL).run()

    group = next(s for s in at.selectbox if s.label == "Group")
    assert group.options[0].startswith("Group 1 · ") and "high" in group.options[0]
    assert any("Unknown cells, group 1 highlighted" in json.dumps(json.loads(c.proto.spec)["layout"])
               for c in at.get("plotly_chart"))
    at.text_input(key=f"unknown-name-{key}").set_value("New monocytes").run()
    next(b for b in at.button if b.label == "Make a new population").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("were labelled as the new population **New monocytes**" in s.value for s in at.success)
    store = LabelStore(Workspace(workspace_dir).labels_dir(key), len(truth))
    [made] = [p for p in store.populations() if p.name == "New monocytes"]
    cells = np.flatnonzero(store.labels() == made.id)
    assert cells.size == 25 and (truth[cells] == HIDDEN).mean() >= 0.9, truth[cells]

    next(b for b in at.button if b.label == "Make a new population").click().run()  # the same name again: added to
    assert [p.name for p in store.populations()].count("New monocytes") == 1

    at.switch_page("pages/map.py").run()
    colour = next(s for s in at.selectbox if s.label == "Colour by")
    colour.set_value("predicted population").run()
    assert not at.exception, at.exception
    names = {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {"unknown", "unassigned"} <= names


def test_a_model_without_unknown_detection_offers_no_level(workspace_dir):
    key, truth, labels = _train(workspace_dir, novelty=False)
    at = _results(key)
    assert not [s for s in at.selectbox if s.label == "Unknown cells"]
    assert any("predates unknown detection" in c.value for c in at.caption)
    assert UNKNOWN_LABEL not in {m.label for m in at.metric}
    assert "Unknown cells" not in [h.value for h in at.subheader]


def test_every_colour_bar_on_the_results_page_says_what_it_shows(workspace_dir):
    key, _, _ = _train(workspace_dir, novelty=False)
    at = _results(key)
    next(r for r in at.radio if r.label == "Colour by").set_value("confidence").run()
    assert not at.exception, at.exception
    bars = [trace.get("colorbar") or trace.get("marker", {}).get("colorbar")
            for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]]
    titles = sorted(bar.get("title", {}).get("text", "") for bar in bars if bar is not None)
    assert titles == ["Cells", "Confidence", "Scaled median"], "the map, the marker heatmap and the confusion matrix"
