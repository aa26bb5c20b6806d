"""The model bundle shipped in models/ loads without pickle and labels fresh demo cells well."""
from __future__ import annotations

import json

import numpy as np

from conftest import ROOT
from cytoauto_core.demo import make_demo
from cytoauto_core.models.bundle import load_bundle, predict_dataset, valley_gate_table

BUNDLE = ROOT / "models" / "demo_bone_marrow_vime"


def test_shipped_bundle_labels_unseen_demo_cells():
    bundle = load_bundle(str(BUNDLE))
    fresh = make_demo(5_000, seed=7)  # cells the bundle never saw (it was trained on seed 0)
    prediction = predict_dataset(bundle, fresh.events, fresh.channel_names, threshold=0.0)
    names = np.array(prediction.class_names, dtype=object)[
        np.searchsorted(prediction.class_ids, prediction.labels)]
    truth = fresh.annotations["population"].astype(str).to_numpy()
    gated = truth != "unassigned"
    assert np.mean(names[gated] == truth[gated]) > 0.9


def test_shipped_bundle_lists_its_valley_gates_by_population_and_marker():
    meta = json.loads((BUNDLE / "bundle.json").read_text())
    labels = {c.name: c.label for c in make_demo(1_000, seed=7).channels}
    gates = valley_gate_table(meta, labels)
    assert gates, "the demo bundle's teacher settled hesitant cells at density valleys"
    for g in gates:
        assert g["below"] in meta["class_names"] and g["above"] in meta["class_names"] and g["below"] != g["above"]
        assert g["marker"] in labels.values() and 0 <= g["valley density"] < 0.5
