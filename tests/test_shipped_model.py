"""The model bundle shipped in models/ loads without pickle and labels fresh demo cells well."""
from __future__ import annotations

import numpy as np

from conftest import ROOT
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models.bundle import load_bundle, predict_dataset

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
    assert bundle.novelty is not None  # a population nobody named comes out unknown (the demo names them all)
    with_unknown = predict_dataset(bundle, fresh.events, fresh.channel_names, threshold=0.0, rejection=0.01)
    assert (with_unknown.labels[gated] == -2).mean() < 0.03
