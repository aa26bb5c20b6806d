"""Per-file QC: a file unlike the training data is flagged, files like it are not, in the core and in a batch run."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.io import concat_datasets, write_fcs
from cytoauto_core.prep.qc import DRIFT_FLOOR, MarkerReference, file_qc, reference_from, sample_qc
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.run.batch import apply_to_files
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models.bundle import ModelBundle, save_bundle
from cytoauto_core.tools.training import build_model

SCALED_CHANNEL = "Nd146Di"


@pytest.fixture(scope="module")
def trained():
    """An LDA model on demo seed 0 with its training-data reference, the way training.py builds it."""
    train = make_demo(20_000, 0)
    spec = default_spec(train)
    x = transform_features(train, spec)
    names = sorted(set(train.annotations["population"]) - {"unassigned"})
    y = train.annotations["population"].map({n: i for i, n in enumerate(names)}).fillna(-1).to_numpy(int)
    model = build_model("LDA", seed=0).fit(x[y >= 0], y[y >= 0], x[y < 0])
    ids = [int(c) for c in model.classes_]
    reference = reference_from(x, spec.features, train.sample_ids)
    bundle = ModelBundle(model, spec, ids, [names[i] for i in ids], name="LDA demo",
                         params={**model.params_dict(), **reference.to_params()})
    return bundle, reference


def _scaled(seed: int, n: int, factor: float):
    ds = make_demo(n, seed)
    events = np.array(ds.events)
    events[:, ds.channel_index([SCALED_CHANNEL])[0]] *= factor
    return dataclasses.replace(ds, events=events)


def _cells(n: int) -> LabelledCells:
    """A quarter unassigned, then a tenth unknown, the rest in population 0."""
    labels = np.zeros(n, np.int32)
    labels[: n // 4] = -1
    labels[n // 4: n // 4 + n // 10] = -2
    return LabelledCells(labels, {0: "a"}, np.full(n, 0.8, np.float32))


@pytest.mark.parametrize("seed, n", [(1, 1_000), (2, 5_000), (3, 50_000)])
def test_files_like_the_training_data_are_not_flagged(trained, seed, n):
    bundle, reference = trained
    qc = file_qc(make_demo(n, seed), _cells(n), bundle.spec, reference)
    assert qc.drift_flag is False and qc.drift < DRIFT_FLOOR / 2
    assert qc.mean_confidence == pytest.approx(0.8) and qc.unassigned_percent == pytest.approx(25)
    assert qc.unknown_percent == pytest.approx(10)


def test_a_scaled_marker_is_flagged_and_named(trained):
    bundle, reference = trained
    assert not file_qc(_scaled(4, 5_000, 1.1), _cells(5_000), bundle.spec, reference).drift_flag
    qc = file_qc(_scaled(4, 5_000, 1.5), _cells(5_000), bundle.spec, reference)
    assert qc.drift_flag and qc.drift > DRIFT_FLOOR and qc.drift_marker.endswith(f"({SCALED_CHANNEL})")


def test_training_samples_that_differ_widen_the_limit(trained):
    bundle, _ = trained
    pooled = [make_demo(5_000, 5), _scaled(6, 5_000, 1.5)]
    x = np.concatenate([transform_features(d, bundle.spec) for d in pooled])
    sample_ids = np.repeat([0, 1], 5_000)
    reference = reference_from(x, bundle.spec.features, sample_ids)
    widened = bundle.spec.features.index(SCALED_CHANNEL)
    assert reference.limits[widened] > DRIFT_FLOOR
    assert np.all(np.delete(reference.limits, widened) < 2 * DRIFT_FLOOR)
    assert not file_qc(_scaled(7, 5_000, 1.5), _cells(5_000), bundle.spec, reference).drift_flag


def test_reference_survives_the_bundle_json_and_old_bundles_say_why_drift_is_missing(trained):
    bundle, reference = trained
    again = MarkerReference.from_params(json.loads(json.dumps(bundle.params)))
    assert again.features == reference.features
    np.testing.assert_allclose(again.quantiles, reference.quantiles, atol=1e-5)
    qc = file_qc(make_demo(1_000, 1), _cells(1_000), bundle.spec, MarkerReference.from_params({}))
    assert qc.drift is None and qc.drift_flag is None
    assert qc.note == "the model was saved without a training-data reference, so drift is not measured"


def test_batch_run_flags_the_shifted_file_only(trained, tmp_path):
    bundle, _ = trained
    save_bundle(bundle, str(tmp_path / "bundle"))
    files = {"plain_1.fcs": make_demo(3_000, 1), "plain_2.fcs": make_demo(3_000, 2),
             "shifted.fcs": _scaled(3, 3_000, 1.5)}
    for name, ds in files.items():
        write_fcs(tmp_path / name, ds)
    report = apply_to_files(tmp_path / "bundle", [str(tmp_path / "*.fcs")], tmp_path / "out", workers=1,
                            progress=False)
    assert report.exit_code == 0
    table = pd.read_csv(report.abundance_path)
    per_file = table.groupby(table["file"].map(lambda p: p.rsplit("/", 1)[-1])).first()
    assert per_file["drift_flag"].to_dict() == {"plain_1.fcs": False, "plain_2.fcs": False, "shifted.fcs": True}
    assert per_file.loc["shifted.fcs", "drift_marker"].endswith(f"({SCALED_CHANNEL})")
    assert per_file["mean_confidence"].between(0, 1).all()
    unassigned = table[table["population"] == "unassigned"].set_index("file")["percent"]
    np.testing.assert_allclose(table.groupby("file")["unassigned_percent"].first().loc[unassigned.index], unassigned,
                               atol=1e-3)


def test_each_sample_of_a_study_gets_its_own_row(trained):
    bundle, reference = trained
    study = concat_datasets([make_demo(2_000, 1), _scaled(2, 2_000, 1.5)], "study")
    table = sample_qc(study, _cells(4_000), bundle.spec, reference)
    assert table["sample"].tolist() == study.samples
    assert table["drift_flag"].tolist() == [False, True]
    assert table["unassigned_percent"].tolist() == [50.0, 0.0]  # _cells marks the first quarter unassigned
    assert table["unknown_percent"].tolist() == [20.0, 0.0]


def test_a_small_file_is_not_flagged_for_its_chance_wander(trained):
    bundle, reference = trained
    ds = make_demo(1_000, 8)
    keep = np.sort(np.random.default_rng(0).choice(ds.n_cells, 150, replace=False))
    small = dataclasses.replace(ds, events=ds.events[keep], sample_ids=ds.sample_ids[keep],
                                annotations=ds.annotations.iloc[keep].reset_index(drop=True))
    qc = file_qc(small, _cells(150), bundle.spec, reference)
    assert qc.drift > DRIFT_FLOOR and qc.drift_flag is False  # above the floor, within chance for 150 cells
