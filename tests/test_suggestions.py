"""'Label these next' in the core: seeded, sized, spread over regions, never a labelled cell, drawn to uncertain cells
and to regions far from every label."""
from __future__ import annotations

import numpy as np
import pytest

from cytoauto_core.tools.suggestions import NO_PROPOSAL, Suggestions, candidate_rows, suggest_cells, uncertainty


def two_populations(n: int = 4_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two overlapping populations along marker 0 (centres ∓1.5, sd 1) in 4 markers; features, truth and the exact
    posterior probabilities of the two populations."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 4)).astype(np.float32)
    x[:, 0] += np.where(y == 0, -1.5, 1.5)
    p1 = 1 / (1 + np.exp(-2 * 1.5 * x[:, 0]))  # log-odds of two unit-variance Gaussians 3 apart
    return x, y, np.column_stack([1 - p1, p1]).astype(np.float32)


def spread_labels(n: int, share: float = 0.1, seed: int = 1) -> np.ndarray:
    """A random `share` of the cells, labelled everywhere (so no region is far from a label)."""
    return np.sort(np.random.default_rng(seed).choice(n, int(n * share), replace=False))


def run(x, proba, labelled, **kwargs) -> Suggestions:
    candidates = np.setdiff1d(np.arange(len(x)), labelled)
    return suggest_cells(x, candidates, None if proba is None else proba[candidates], labelled, **kwargs)


def test_same_seed_same_suggestions_and_another_seed_may_differ():
    x, _, proba = two_populations()
    labelled = spread_labels(len(x))
    a, b = run(x, proba, labelled, n_cells=20, seed=3), run(x, proba, labelled, n_cells=20, seed=3)
    assert np.array_equal(a.cells, b.cells) and np.array_equal(a.group, b.group) and a.explanation == b.explanation
    others = [run(x, proba, labelled, n_cells=20, seed=s).cells for s in (4, 5)]
    assert any(not np.array_equal(a.cells, o) for o in others)


def test_sizes_groups_and_proposals():
    x, _, proba = two_populations()
    labelled = spread_labels(len(x))
    s = run(x, proba, labelled, n_cells=23, group_size=5, class_ids=np.array([10, 20]))
    assert s.cells.size == 23 and np.unique(s.cells).size == 23
    assert s.n_groups == 5 and [s.members(g).size for g in range(5)] == [5, 5, 5, 5, 3]
    assert set(s.proposed.tolist()) <= {10, 20}
    assert np.array_equal(s.proposed, np.array([10, 20])[proba[s.cells].argmax(axis=1)])
    assert all(s.group_proposal(g) in (10, 20) for g in range(s.n_groups))
    one = run(x, proba, labelled, n_cells=3)
    assert one.cells.size == 3 and one.n_groups == 1


def test_labelled_cells_are_never_suggested():
    x, _, proba = two_populations()
    labelled = spread_labels(len(x), share=0.5)
    everyone = np.arange(len(x))  # candidates include the labelled cells: they are dropped
    s = suggest_cells(x, everyone, proba, labelled, n_cells=40, seed=0)
    assert s.cells.size == 40 and not np.isin(s.cells, labelled).any()


def test_prefers_cells_the_model_is_unsure_about():
    x, _, proba = two_populations()
    labelled = spread_labels(len(x))
    candidates = np.setdiff1d(np.arange(len(x)), labelled)
    s = run(x, proba, labelled, n_cells=30)
    assert uncertainty(proba[s.cells], 30).mean() > 2 * uncertainty(proba[candidates], candidates.size).mean()
    assert np.abs(x[s.cells, 0]).mean() < 0.5 * np.abs(x[candidates, 0]).mean(), "drawn to the boundary at 0"
    assert "uncertain" in s.explanation


def test_groups_come_from_distinct_regions_not_one_spot():
    """A tight spot of 600 near-identical, maximally uncertain cells gives one group, not the whole batch."""
    x, _, proba = two_populations()
    rng = np.random.default_rng(2)
    spot = rng.normal(0, 0.01, (600, 4)).astype(np.float32)
    x = np.concatenate([x, spot])
    proba = np.concatenate([proba, np.full((600, 2), 0.5, np.float32)])
    labelled = spread_labels(len(x))
    s = run(x, proba, labelled, n_cells=25, group_size=5)
    in_spot = s.cells >= len(x) - 600
    assert 0 < in_spot.sum() <= 5
    assert np.unique(s.group[in_spot]).size == 1


def test_a_confident_region_far_from_every_label_is_suggested():
    """A third, unlabelled population that the model calls population 0 with certainty is still proposed."""
    x, y, proba = two_populations()
    rng = np.random.default_rng(3)
    far = (rng.normal(0, 0.5, (800, 4)) + [0, 8, 0, 0]).astype(np.float32)
    x = np.concatenate([x, far])
    proba = np.concatenate([proba, np.tile(np.array([[0.999, 0.001]], np.float32), (800, 1))])
    labelled = spread_labels(len(x) - 800)  # labels only in the two known populations
    s = run(x, proba, labelled, n_cells=10, group_size=5)
    assert (s.cells >= len(x) - 800).sum() >= 5, "one group in the unlabelled region"
    assert "far from every label" in s.explanation


def test_without_a_model_it_suggests_dense_regions_without_proposals():
    x, _, _ = two_populations()
    s = run(x, None, np.empty(0, np.int64), n_cells=10, source="no model yet")
    assert s.cells.size == 10 and (s.proposed == NO_PROPOSAL).all()
    assert s.group_proposal(0) == NO_PROPOSAL
    assert "far from every label" in s.explanation and "no model yet" in s.explanation


def test_candidate_rows_subsample_is_seeded_and_capped():
    rows = np.arange(0, 100_000, 2)
    a, b = candidate_rows(rows, 1_000, seed=7), candidate_rows(rows, 1_000, seed=7)
    assert a.size == 1_000 and np.array_equal(a, b) and np.isin(a, rows).all()
    assert np.array_equal(candidate_rows(rows[:10], 1_000), rows[:10])


@pytest.mark.parametrize("n_cells", [0, -1])
def test_nothing_asked_nothing_suggested(n_cells):
    x, _, proba = two_populations(500)
    s = run(x, proba, np.empty(0, np.int64), n_cells=n_cells)
    assert s.cells.size == 0 and s.n_groups == 0


def _demo_label_page(workspace_dir, populations: tuple[str, ...]):
    """The app on the demo with 10 true cells labelled per population in `populations`: (AppTest, store, truth)."""
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    from cytoauto_core.store.labels import LabelStore
    from cytoauto_core.store.workspace import Workspace
    from cytoauto_core.study.demo import DEMO_CELLS, make_demo

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    [record] = Workspace(workspace_dir).list_datasets()
    store = LabelStore(Workspace(workspace_dir).labels_dir(record.key), DEMO_CELLS)
    truth = make_demo().annotations["population"].to_numpy()
    for name in populations:
        store.assign(np.flatnonzero(truth == name)[:10], store.create_population(name))
    return at, store, truth, record.key


def _press(at) -> str:
    """Press 'Label these next' on the Label page; the one-line explanation it shows."""
    at.switch_page("pages/label.py").run()
    assert not at.exception, at.exception
    next(b for b in at.button if b.label == "Label these next").click().run()
    assert not at.exception, at.exception
    [line] = [c.value for c in at.caption if "cells in" in c.value and "groups" in c.value]
    return line


def test_label_page_suggests_on_the_demo_and_saves_the_answers(workspace_dir):
    """On the demo with two labelled populations and no trained model: the button fits the quick baseline, says so,
    and accepting one group and naming another saves both through the label store."""
    at, store, _, _ = _demo_label_page(workspace_dir, ("CD4_T_cells", "Mature_B_cells"))
    line = _press(at)
    assert line.startswith("10 cells in 2 groups") and "quick logistic regression" in line, line
    accept = next(b for b in at.button if b.label.startswith("Accept "))
    proposed = accept.label[len("Accept "):]
    accept.click().run()
    assert not at.exception, at.exception
    next(t for t in at.text_input if t.label == "New population for group 2").input("Suggested group").run()
    assert not at.exception, at.exception
    counts = store.counts().set_index("name")["cells"].to_dict()
    assert counts["Suggested group"] == 5 and counts[proposed] == 15, counts
    assert any("Every suggested group is answered" in s.value for s in at.success)


def test_label_page_uses_the_last_trained_model_and_its_population_names(workspace_dir):
    """A stored result (the last trained model) gives the probabilities and the proposed names; choosing another
    population for a group labels its cells so."""
    from cytoauto_core.store.workspace import Workspace
    from cytoauto_core.tools.models.baselines import LogisticRegressionModel

    names = ("CD4_T_cells", "Mature_B_cells", "Monocytes")
    at, store, truth, key = _demo_label_page(workspace_dir, names)
    labels = store.labels()
    x = np.arcsinh(Workspace(workspace_dir).load_dataset(key).events[:, :32] / 5).astype(np.float32)
    model = LogisticRegressionModel().fit(x[labels >= 0], labels[labels >= 0])
    Workspace(workspace_dir).save_array(key, "result-proba", model.predict_proba(x), {
        "model": "Logistic regression", "class_ids": [0, 1, 2], "class_names": list(names), "bundle_hash": "0" * 64})
    line = _press(at)
    assert line.startswith("15 cells in 3 groups") and "the last trained model (Logistic regression)" in line, line
    accepts = [b.label for b in at.button if b.label.startswith("Accept ")]
    assert len(accepts) == 3 and all(a[len("Accept "):] in names for a in accepts), accepts
    first = accepts[0][len("Accept "):]
    other = next(n for n in names if n != first)
    next(s for s in at.selectbox if s.label == "Another population for group 1").select(other).run()
    assert not at.exception, at.exception
    assert (store.labels() == store.counts().set_index("name").loc[other, "id"]).sum() == 15


def test_label_page_without_enough_labels_suggests_regions_without_proposals(workspace_dir):
    at, _, _, _ = _demo_label_page(workspace_dir, ())
    line = _press(at)
    assert line.startswith("10 cells in 2 groups") and "no model yet" in line, line
    assert all(b.disabled for b in at.button if b.label == "Accept")
