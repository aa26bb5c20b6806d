"""Bundles: pickle-free round trip for each model type, tamper detection, channel matching by name."""
from __future__ import annotations

import glob
import json

import numpy as np
import pytest

from cytoauto_core.errors import CytoInputError
from cytoauto_core.models import bundle as bundle_module
from cytoauto_core.models.baselines import LDAModel, LogisticRegressionModel, XGBoostModel, XGBoostParams
from cytoauto_core.models.bundle import ModelBundle, load_bundle, predict_dataset, save_bundle
from cytoauto_core.transforms import TransformSpec
from synthetic import gaussian_cells, label_split

NAMES = [f"CD{i}" for i in range(8)]


def _vime():
    from cytoauto_core.models.vime import VIMEClassifier, VIMEParams

    return VIMEClassifier(VIMEParams(encoder_sizes=[16], predictor_sizes=[16], pretrain_steps=20, semi_steps=120,
                                     rounds=1, batch_labeled=64, batch_unlabeled=64, ensemble=2))


MAKERS = {"lda": LDAModel, "logreg": LogisticRegressionModel,
          "xgboost": lambda: XGBoostModel(XGBoostParams(n_estimators=20)), "vime": _vime}


@pytest.fixture(scope="module")
def cells():
    """Raw events (5·sinh of the features, so arcsinh/5 recovers them), channel names and labels."""
    x, y = gaussian_cells(200)
    return (5 * np.sinh(x)).astype(np.float32), x, y


def _bundle(kind: str, cells) -> ModelBundle:
    raw, x, y = cells
    lab, rest = label_split(y, 10)
    model = MAKERS[kind]().fit(x[lab], y[lab], x[rest])
    ids = model.classes_.tolist()
    return ModelBundle(model, TransformSpec(features=NAMES), ids, [f"pop{i}" for i in ids], name=f"test-{kind}",
                       metrics={"accuracy": 1.0}, seed=0)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_round_trip_gives_identical_predictions_without_pickle(kind, cells, tmp_path):
    raw, x, y = cells
    bundle = _bundle(kind, cells)
    digest = save_bundle(bundle, str(tmp_path / kind))
    loaded = load_bundle(str(tmp_path / kind))
    assert len(digest) == 64 and loaded.class_names == bundle.class_names and loaded.versions["numpy"]
    order = [7, 2, 0, 5, 1, 3, 6, 4]  # channels shuffled plus an extra one: matched by name
    events = np.concatenate([raw[:, order], np.ones((len(raw), 1), np.float32)], axis=1)
    names = [NAMES[i] for i in order] + ["Time"]
    before = predict_dataset(bundle, raw, NAMES)
    after = predict_dataset(loaded, events, names)
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
    assert np.array_equal(before.labels, after.labels) and np.mean(after.labels == y) > 0.9
    assert after.probabilities.dtype == np.float32 and after.confidence.dtype == np.float32
    for path in glob.glob(str(tmp_path / kind / "*.npz")):
        with np.load(path, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)
    for path in glob.glob(str(tmp_path / kind / "*")):
        assert not open(path, "rb").read(1) == b"\x80"  # no pickle stream anywhere


def test_tampered_files_are_refused(cells, tmp_path):
    bundle = _bundle("logreg", cells)
    save_bundle(bundle, str(tmp_path / "b"))
    path = tmp_path / "b" / "linear.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef"] = arrays["coef"] * 2
    np.savez(path, **arrays)
    with pytest.raises(CytoInputError, match=r"The model bundle 'b' has been modified since it was saved \(linear.npz"):
        load_bundle(str(tmp_path / "b"))

    save_bundle(bundle, str(tmp_path / "c"))
    meta = json.loads((tmp_path / "c" / "bundle.json").read_text())
    meta["class_names"][0] = "renamed"
    (tmp_path / "c" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(CytoInputError, match="has been modified since it was saved"):
        load_bundle(str(tmp_path / "c"))


def test_missing_channel_refused_in_one_sentence(cells):
    raw, _, _ = cells
    bundle = _bundle("lda", cells)
    with pytest.raises(CytoInputError, match=r"^This file lacks channel 'CD3', which the model 'test-lda' needs\.$"):
        predict_dataset(bundle, np.delete(raw, [3, 5], axis=1), [n for n in NAMES if n not in ("CD3", "CD5")])


def test_threshold_and_chunking(cells, monkeypatch):
    raw, _, y = cells
    bundle = _bundle("lda", cells)
    whole = predict_dataset(bundle, raw, NAMES, threshold=0.9)
    monkeypatch.setattr(bundle_module, "CHUNK_ROWS", 37)
    chunked = predict_dataset(bundle, raw, NAMES, threshold=0.9)
    np.testing.assert_array_equal(whole.probabilities, chunked.probabilities)
    assert np.array_equal(whole.labels == -1, whole.confidence < 0.9)
    assert set(whole.labels.tolist()) <= {-1, 3, 7, 9, 12}
    assert (predict_dataset(bundle, raw, NAMES, threshold=1.01).labels == -1).all()
