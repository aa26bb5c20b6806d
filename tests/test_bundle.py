"""Bundles: pickle-free round trip for each model type, tamper detection, channel matching by name."""
from __future__ import annotations

import glob
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import write_fcs
from cytoauto_core.prep.transforms import TransformSpec
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models import bundle as bundle_module
from cytoauto_core.tools.models.baselines import LDAModel, LogisticRegressionModel, XGBoostModel, XGBoostParams
from cytoauto_core.tools.models.bundle import ModelBundle, load_bundle, predict_dataset, save_bundle
from synthetic import gaussian_cells, label_split

NAMES = [f"CD{i}" for i in range(8)]


def _vime():
    from cytoauto_core.tools.models.vime import VIMEClassifier, VIMEParams

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


def _rehash(folder, edit=None) -> None:
    """Re-sign a bundle the way someone who knows the format would: every listed file's sha256, then bundle_hash."""
    meta = json.loads((folder / "bundle.json").read_text())
    meta.pop("bundle_hash")
    if edit:
        edit(meta)
    meta["files"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in meta["files"]}
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    (folder / "bundle.json").write_text(json.dumps({**meta, "bundle_hash": hashlib.sha256(canonical).hexdigest()}))


@pytest.fixture(scope="module")
def saved(cells, tmp_path_factory):
    """A saved logistic-regression and XGBoost bundle to copy and tamper with."""
    root = tmp_path_factory.mktemp("saved")
    for kind in ("logreg", "xgboost"):
        save_bundle(_bundle(kind, cells), str(root / kind))
    return root


def _copy(saved, kind, tmp_path):
    shutil.copytree(saved / kind, tmp_path / "b")
    return tmp_path / "b"


def test_the_file_list_covers_every_file_in_the_folder(saved, tmp_path):
    folder = _copy(saved, "logreg", tmp_path)
    _rehash(folder, lambda meta: meta["files"].pop("linear.npz"))
    with pytest.raises(CytoInputError, match=r"^The model bundle 'b' holds a file it did not save \(linear\.npz\)\.$"):
        load_bundle(str(folder))

    folder = _copy(saved, "logreg", tmp_path / "extra")
    (folder / "notes.txt").write_text("added later")
    with pytest.raises(CytoInputError, match=r"holds a file it did not save \(notes\.txt\)"):
        load_bundle(str(folder))

    folder = _copy(saved, "logreg", tmp_path / "missing")
    (folder / "linear.npz").unlink()
    with pytest.raises(CytoInputError, match=r"^The model bundle 'b' is incomplete \(linear\.npz is missing\)\.$"):
        load_bundle(str(folder))


def test_links_and_paths_outside_the_folder_are_refused(saved, tmp_path):
    folder = _copy(saved, "logreg", tmp_path)
    outside = tmp_path / "linear.npz"
    (folder / "linear.npz").rename(outside)
    (folder / "linear.npz").symlink_to(outside)  # same bytes, same hash: only the link itself is wrong
    with pytest.raises(CytoInputError, match=r"holds linear\.npz as a link or folder, not a saved file\.$"):
        load_bundle(str(folder))

    folder = _copy(saved, "logreg", tmp_path / "dotdot")
    (folder / "linear.npz").rename(folder.parent / "linear.npz")
    _rehash(folder, lambda meta: meta.update(files={"../linear.npz": ""}))
    with pytest.raises(CytoInputError, match=r"lists a file outside its folder \('\.\./linear\.npz'\)\.$"):
        load_bundle(str(folder))


def test_files_larger_than_a_bundle_holds_are_refused_before_they_are_read(saved, tmp_path, monkeypatch):
    folder = _copy(saved, "xgboost", tmp_path)
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_FILE_BYTES", 1_000)
    with pytest.raises(CytoInputError, match=r"^The model bundle 'b' holds model\.json, larger than this app reads "
                                             r"\([\d,]+ bytes; at most 1,000\)\.$"):
        load_bundle(str(folder))
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_FILE_BYTES", 1 << 30)
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 1_000)
    with pytest.raises(CytoInputError, match=r"^The model bundle 'b' is larger than this app reads \([\d,]+ bytes; "
                                             r"at most 1,000\)\.$"):
        load_bundle(str(folder))


def test_refusals_name_the_bundle_as_the_caller_asks(saved, tmp_path):
    folder = _copy(saved, "logreg", tmp_path)
    (folder / "linear.npz").write_bytes(b"changed")
    with pytest.raises(CytoInputError, match=r"^The model bundle 'colleague\.zip' has been modified since it was saved"):
        load_bundle(str(folder), label="colleague.zip")


def test_npz_arrays_that_are_not_plain_numbers_are_refused(saved, tmp_path):
    folder = _copy(saved, "logreg", tmp_path)
    with np.load(folder / "linear.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(folder / "linear.npz", **{**arrays, "classes": np.array(["a", "b"])})
    _rehash(folder)
    with pytest.raises(CytoInputError, match=r"^The model bundle 'b' cannot be loaded: linear\.npz's entry "
                                             r"'classes\.npy' is not a plain numeric array\.$"):
        load_bundle(str(folder))


def _unloadable(*folders) -> list[str]:
    """Load each folder in one child process, so that a regression crashing libxgboost fails this test instead of
    killing pytest; the one-sentence error of each (or 'loaded')."""
    code = ("import sys\nfrom cytoauto_core.base.errors import CytoInputError\nfrom cytoauto_core.tools.models.bundle import load_bundle\n"
            "for folder in sys.argv[1:]:\n    try:\n        load_bundle(folder)\n        print('loaded')\n"
            "    except CytoInputError as exc:\n        print(str(exc).replace(chr(10), ' '))\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, folders)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return done.stdout.strip().split("\n")


def test_re_signed_bundles_that_cannot_load_are_one_sentence(saved, tmp_path):
    cannot = "The model bundle 'b' cannot be loaded: its model files are not valid."
    cases = {
        "garbage booster": ("xgboost", lambda f: (f / "model.json").write_text("garbage"), None),
        "deeply nested booster": ("xgboost", lambda f: (f / "model.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000), None),
        "booster index out of range": ("xgboost", _out_of_range_child, None),
        "weights of the wrong shape": ("logreg", _wrong_shape, None),
        "wrong types": ("logreg", None, lambda meta: meta.update(class_ids="abc")),
        "config of the wrong type": ("logreg", None, lambda meta: meta.update(model=[1, 2])),
    }
    folders = {}
    for name, (kind, damage, edit) in cases.items():
        folders[name] = _copy(saved, kind, tmp_path / name.replace(" ", "-"))
        if damage:
            damage(folders[name])
        _rehash(folders[name], edit)
    folders["nested bundle.json"] = _copy(saved, "logreg", tmp_path / "nested-meta")
    (folders["nested bundle.json"] / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    expected = {**{name: cannot for name in cases},
                "nested bundle.json": "The folder 'b' does not contain a readable model bundle."}
    assert dict(zip(folders, _unloadable(*folders.values()))) == expected


def _out_of_range_child(folder) -> None:
    model = json.loads((folder / "model.json").read_text())
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["left_children"][0] = 10 ** 6
    (folder / "model.json").write_text(json.dumps(model))


def _wrong_shape(folder) -> None:
    with np.load(folder / "linear.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef"] = arrays["coef"][:, :3]
    np.savez(folder / "linear.npz", **arrays)


def test_apply_exits_2_with_one_sentence_for_a_bundle_that_cannot_load(saved, tmp_path):
    folder = _copy(saved, "xgboost", tmp_path)
    (folder / "model.json").write_text("garbage")
    _rehash(folder)
    fcs = tmp_path / "demo.fcs"
    write_fcs(fcs, make_demo(1_000, 1))
    done = subprocess.run([sys.executable, "-m", "cytoauto_core", "apply", "--model", str(folder), "--out",
                           str(tmp_path / "out"), "--workers", "1", str(fcs)], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == "error: The model bundle 'b' cannot be loaded: its model files are not valid."

    (folder / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    done = subprocess.run([sys.executable, "-m", "cytoauto_core", "apply", "--model", str(folder), "--out",
                           str(tmp_path / "out"), str(fcs)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2 and done.stderr.strip() == f"error: '{folder}' is not a readable model bundle folder."


def test_labelling_every_cell_reports_progress_per_chunk_and_can_be_cancelled(cells, monkeypatch):
    from cytoauto_core.tools.models import TrainingCancelled

    raw = cells[0]
    bundle = _bundle("lda", cells)
    monkeypatch.setattr(bundle_module, "CHUNK_ROWS", 100)
    seen = []
    predict_dataset(bundle, raw, NAMES, progress=lambda f, m: seen.append((f, m)))
    assert len(seen) == -(-len(raw) // 100) and seen[0][0] == 0.0 and seen[-1][0] < 1.0
    assert seen[1][1] == f"labelled 100 of {len(raw):,} cells"
    calls = iter([False, True])
    with pytest.raises(TrainingCancelled):
        predict_dataset(bundle, raw, NAMES, should_stop=lambda: next(calls))
