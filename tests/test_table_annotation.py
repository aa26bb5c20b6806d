"""Naming cells from a marker table: Levine_32dim's published table names its 30,000 gated cells with no clicks,
explains each population by its markers, flags clicked cells that contradict their row, and a model trained on the
table (with or without clicks) saves to a bundle that loads and predicts the same, through train_and_apply too."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from cytoauto_core.base.labelled import name_key
from cytoauto_core.io import read_file
from cytoauto_core.io.marker_table import MarkerTable, channel_key, read_marker_table
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.tools.models.baselines import LDAModel
from cytoauto_core.tools.models.bundle import ModelBundle, load_bundle, save_bundle
from cytoauto_core.tools.table_annotation import UNASSIGNED, TableAnnotator, annotate, confident_cells
from cytoauto_core.tools.table_training import TableBlendModel, table_population_ids
from cytoauto_core.tools.training import TrainingRequest, train_and_apply
from tests.conftest import LEVINE

TABLE_FILE = LEVINE / "knowledge_table" / "levine32_expected_expression.csv"


@pytest.fixture(scope="module")
def levine():
    """The 30k gated cells (arcsinh), their population names, the table and each table marker's column."""
    df = pd.read_csv(LEVINE / "Levine_32dim_labeled30k_arcsinh.csv")
    markers = [c for c in df.columns if c not in ("label", "population", "split")]
    table = read_marker_table(TABLE_FILE.read_bytes(), TABLE_FILE.name)
    keys = {channel_key(m): j for j, m in enumerate(markers)}
    columns = [keys[channel_key(m)] for m in table.markers]
    return df[markers].to_numpy(np.float32), df["population"].astype(str).to_numpy(), table, columns


def _named(annotation, truth: np.ndarray) -> np.ndarray:
    names = {name_key(p): p for p in np.unique(truth)}
    called = np.array([names[name_key(p)] for p in annotation.populations] + ["unassigned"], dtype=object)
    return called[np.where(annotation.calls == UNASSIGNED, len(annotation.populations), annotation.calls)]


def test_the_published_table_names_levine_cells_with_no_clicks(levine):
    x, truth, table, columns = levine
    annotation = annotate(table, columns, x, seed=0)
    assert annotation.calls.dtype == np.int16 and len(annotation.calls) == len(x)
    assert sum(annotation.counts().values()) == len(x)
    f1 = f1_score(truth, _named(annotation, truth), labels=np.unique(truth), average="macro")
    assert f1 > 0.8, f"macro-F1 {f1:.3f} (bench/marker_table.py measures 0.85 on the test rows)"
    cd4 = annotation.explanations["CD4 T cells"]
    assert cd4.startswith("CD4 T cells (") and "CD3+" in cd4 and "CD8−" in cd4, cd4
    shares = [int(re.search(rf"{re.escape(m)} (\d+) %", cd4).group(1)) for m in ("CD3+", "CD4+", "CD8−")]
    assert min(shares) >= 80, f"CD4 T cells are named by being CD3+ CD4+ CD8−: {cd4}"
    again = annotate(table, columns, x, seed=0)
    assert np.array_equal(again.calls, annotation.calls), "same seed, same calls"


def test_a_table_marker_without_a_feature_is_left_out_with_a_note(levine):
    x, truth, table, columns = levine
    dropped = [c if m != "CD64" else -1 for m, c in zip(table.markers, columns)]
    annotation = annotate(table, dropped, x, seed=0)
    assert annotation.notes == ["The marker table's CD64 is not among the features in use; it is left out."]
    assert "CD64" not in annotation.explanations["Monocytes"]


def _clicks(truth: np.ndarray, per_population: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(truth == p), per_population, replace=False)
                                   for p in np.unique(truth)]))


def test_clicks_that_contradict_a_row_are_flagged_and_win(levine):
    x, truth, table, columns = levine
    values = table.values.copy()
    cd4, cd3 = table.populations.index("CD4 T cells"), table.markers.index("CD3")
    values[cd4, cd3] = -1  # a wrong row: CD4 T cells said to be CD3−
    wrong = MarkerTable(table.populations, table.markers, values)
    populations = sorted(np.unique(truth))
    ids = {name_key(p): i for i, p in enumerate(populations)}
    clicked = _clicks(truth, 5, 0)
    y = np.array([ids[name_key(p)] for p in truth[clicked]])
    model = TableBlendModel(wrong, columns, [ids[name_key(p)] for p in table.populations], LDAModel(seed=0), seed=0)
    model.fit(x[clicked], y, np.delete(x, clicked, axis=0))
    assert [(c.population, c.marker, c.expressed) for c in model.contradictions] == [("CD4 T cells", "CD3", False)]
    assert "The 5 cells you labelled CD4 T cells are mostly CD3+" in model.contradictions[0].sentence
    assert any(s.startswith("From your clicks: 70 labelled cells in 14 populations") for s in model.provenance)
    pred = np.array(populations)[model.classes_[model.predict_proba(x).argmax(axis=1)]]
    cd4_f1 = f1_score(truth == "CD4_T_cells", pred == "CD4_T_cells")
    assert cd4_f1 > 0.9, f"the clicks, not the wrong row, decide CD4 T cells (F1 {cd4_f1:.3f})"


def test_a_table_model_saves_as_a_bundle_that_predicts_the_same(levine, tmp_path):
    x, truth, table, columns = levine
    populations = sorted(np.unique(truth))
    ids = {name_key(p): i for i, p in enumerate(populations)}
    clicked = _clicks(truth, 5, 1)
    y = np.array([ids[name_key(p)] for p in truth[clicked]])
    model = TableBlendModel(table, columns, [ids[name_key(p)] for p in table.populations], LDAModel(seed=0), seed=0)
    model.fit(x[clicked], y, x[::3])
    probe = x[:2000]
    spec = default_spec_for(len(x[0]))
    bundle = ModelBundle(classifier=model, spec=spec, class_ids=[int(c) for c in model.classes_],
                         class_names=[populations[c] for c in model.classes_])
    save_bundle(bundle, str(tmp_path / "b"))
    loaded = load_bundle(str(tmp_path / "b"))
    assert loaded.classifier.kind == "table_blend"
    np.testing.assert_allclose(loaded.classifier.predict_proba(probe), model.predict_proba(probe), atol=1e-5)


def default_spec_for(d: int):
    """An identity transform over d features named f0..f(d-1) (the bundle records it; not used here)."""
    from cytoauto_core.prep.transforms import TransformSpec

    return TransformSpec(features=[f"f{i}" for i in range(d)], linear=[f"f{i}" for i in range(d)])


def test_train_and_apply_with_a_table_and_no_clicks_names_every_cell(tmp_path):
    dataset = read_file(LEVINE / "Levine_32dim_10k.fcs")
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    table = read_marker_table(TABLE_FILE.read_bytes(), TABLE_FILE.name)
    names = dict(enumerate(table.populations))
    labels = np.full(dataset.n_cells, -1, np.int32)
    outcome = train_and_apply(dataset, x, spec, labels, names, TrainingRequest(compare=[], apply="LDA", table=table),
                              tmp_path / "models", lambda f, m: None, lambda: False)
    assert outcome.n_labelled == 0 and outcome.scores.empty
    assert outcome.provenance[0].startswith("From the marker table: 14 populations named by 14 markers; 14 of them")
    named = outcome.prediction.labels[outcome.prediction.labels >= 0]
    counts = np.bincount(named, minlength=14)
    assert named.size > 0.8 * dataset.n_cells and (counts > 0).sum() >= 12, counts
    assert table_population_ids(table, names) == list(range(14))
    assert load_bundle(str(outcome.bundle_dir)).classifier.kind == "table_blend"



def test_a_table_model_without_a_discriminant_saves_and_loads(levine, tmp_path):
    """fit() learns no discriminant when every teaching cell falls in one population; the model still saves, and the
    loaded one names cells by the table's likelihoods as the fitted one does."""
    x, truth, table, columns = levine
    populations = sorted(np.unique(truth))
    ids = {name_key(p): i for i, p in enumerate(populations)}
    model = TableBlendModel(table, columns, [ids[name_key(p)] for p in table.populations], None, seed=0)
    model.fit(x[:0], np.zeros(0, np.int64), x[::3])
    model.annotator.discriminant = None
    bundle = ModelBundle(classifier=model, spec=default_spec_for(len(x[0])), class_ids=[int(c) for c in model.classes_],
                         class_names=[populations[c] for c in model.classes_])
    save_bundle(bundle, str(tmp_path / "b"))
    loaded = load_bundle(str(tmp_path / "b")).classifier
    assert loaded.annotator.discriminant is None
    saved, fitted = loaded.predict_proba(x[:2000]), model.predict_proba(x[:2000])
    np.testing.assert_array_equal(saved.argmax(axis=1), fitted.argmax(axis=1))
    np.testing.assert_allclose(saved, fitted, atol=1e-3)  # the bundle's levels are rounded to 5 decimals


def test_training_finds_the_levels_on_the_cells_the_tab_does(levine):
    """Above FIT_CELLS cells, the model trained from the table and the Label page's annotation place every marker's
    levels on the same seeded subsample, so the Train page starts from the levels the user saw."""
    x, truth, table, columns = levine
    many = np.tile(x, (8, 1))  # 240,000 cells
    populations = sorted(np.unique(truth))
    ids = {name_key(p): i for i, p in enumerate(populations)}
    model = TableBlendModel(table, columns, [ids[name_key(p)] for p in table.populations], None, seed=3)
    model.fit(many[:0], np.zeros(0, np.int64), many)
    seen = TableAnnotator(table, columns, seed=3).fit(many)  # what annotate() fits
    assert model.annotator.levels.to_dict() == seen.levels.to_dict()


def test_only_cells_that_fit_their_row_teach(levine):
    """A cell the table calls but that sits on the wrong side of one of its row's markers (often a cell of a population
    the table lacks) never teaches the discriminant: on Levine_32dim some of the most confident calls are such cells."""
    x, truth, table, columns = levine
    annotator = TableAnnotator(table, columns, seed=0)
    sample, cells, calls = annotator.teaching(x)
    assert len(cells) > 1000 and annotator.fits_row(cells, calls).all()
    log_p = annotator.table_log_proba(sample)
    unfiltered = confident_cells(log_p, np.ones(len(sample), bool))
    assert not annotator.fits_row(sample[unfiltered], log_p[unfiltered].argmax(axis=1)).all()
