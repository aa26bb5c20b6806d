"""The 'cells forced into few populations' notice: three named populations of the demo's fourteen."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import ensure_demo, make_demo
from cytoauto_core.tools.coverage import forced_notice

NAMED = ["CD4_T_cells", "Mature_B_cells", "Monocytes"]


@pytest.fixture(scope="module")
def demo():
    dataset = make_demo(20_000)
    truth = dataset.annotations["population"].to_numpy().astype(str)
    return transform_features(dataset, default_spec(dataset)), truth


def test_three_named_populations_swallow_the_other_eleven(demo):
    x, truth = demo
    rng = np.random.default_rng(0)
    labelled = np.full(len(truth), -1)
    for i, name in enumerate(NAMED):  # ~1,300 labelled cells each, as a lasso on the map gives
        members = np.flatnonzero(truth == name)
        labelled[rng.choice(members, min(1_300, members.size), replace=False)] = i
    model = LogisticRegression(max_iter=500).fit(x[labelled >= 0], labelled[labelled >= 0])
    predicted = model.predict(x)
    names = dict(enumerate(NAMED))
    notice = forced_notice(predicted, names, labelled, names)
    assert notice is not None and notice.startswith("100.0% of cells were placed in your 3 named population(s)")
    assert "Label page" in notice and "\n" not in notice
    sizes = dict(enumerate(np.bincount(np.unique(truth, return_inverse=True)[1]).tolist()))
    assert "clusters of 1 % or more" in forced_notice(predicted, names, np.full(len(truth), -1), {}, sizes)


def test_no_notice_when_every_population_is_named(demo):
    _, truth = demo
    vocabulary = sorted(set(truth) - {"unassigned"})
    names = dict(enumerate(vocabulary))
    codes = {n: i for i, n in names.items()}
    labelled = np.array([codes.get(n, -1) for n in truth])
    predicted = np.where(labelled >= 0, labelled, 0)  # the unlabelled transitional cells go somewhere
    sizes = dict(enumerate(np.bincount(labelled[labelled >= 0]).tolist()))
    assert forced_notice(predicted, names, labelled, names, sizes) is None
    left_out = np.where(labelled >= 0, labelled, -1)  # a 70 % coverage: the other cells are left unassigned
    assert forced_notice(left_out, names, np.full(len(truth), -1), {}, {0: len(truth)}) is None


def test_results_page_shows_the_notice_and_points_to_the_label_page(workspace_dir):
    ws = Workspace(workspace_dir)
    key = ensure_demo(ws)
    dataset = ws.load_dataset(key)
    x = transform_features(dataset, default_spec(dataset))
    truth = dataset.annotations["population"].to_numpy().astype(str)
    store = LabelStore(ws.labels_dir(key), dataset.n_cells)
    rng = np.random.default_rng(1)
    for name in NAMED:
        store.assign(rng.choice(np.flatnonzero(truth == name), 1_300, replace=False), store.create_population(name))
    labels = store.labels()
    model = LogisticRegression(max_iter=500).fit(x[labels >= 0], labels[labels >= 0])
    ws.save_array(key, "result-proba", model.predict_proba(x).astype(np.float32), {
        "model": "logreg", "bundle_hash": "0" * 64, "bundle_dir": "none", "class_ids": model.classes_.tolist(),
        "class_names": NAMED, "threshold": 0.5, "seed": 0, "n_labelled": int((labels >= 0).sum()), "metrics": {},
        "seconds": 1.0,
    })
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    [warning] = [w.value for w in at.warning if "named population(s)" in w.value]
    assert "forced into the nearest named one" in warning
