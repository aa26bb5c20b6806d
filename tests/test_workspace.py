"""The workspace keeps datasets, settings and derived arrays across a restart, cleans what killed writes left, and
skips (with a warning) what it cannot read; a bad dataset in the URL opens the demo."""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from conftest import ROOT
from cytoauto_core.study.demo import DEMO_CELLS, make_demo
from cytoauto_core.base import storage as storage_module
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.storage import directory_lock
from cytoauto_core.store.workspace import STALE_S, Workspace


def test_dataset_survives_restart(workspace_dir):
    ds = make_demo(2_000, seed=3)
    key = Workspace().add_dataset(ds)
    assert key == ds.content_hash()
    reopened = Workspace(workspace_dir)  # a new process would see the same folder
    [record] = reopened.list_datasets()
    assert record.key == key and record.n_cells == 2_000
    loaded = reopened.load_dataset(key)
    assert np.array_equal(loaded.events, ds.events)
    assert loaded.events.dtype == np.float32
    assert [c.name for c in loaded.channels] == ds.channel_names
    assert (loaded.annotations["population"] == ds.annotations["population"]).all()
    assert loaded.content_hash() == key


def test_adding_twice_is_idempotent_and_settings_persist(workspace_dir):
    ws = Workspace()
    ds = make_demo(1_000)
    key = ws.add_dataset(ds)
    assert ws.add_dataset(ds) == key
    ws.save_settings(key, {"cofactor": 5})
    ws.save_array(key, "embedding-abc", np.ones((1_000, 2), np.float32), {"method": "pca"})
    again = Workspace(workspace_dir)
    assert again.load_settings(key) == {"cofactor": 5}
    arr, meta = again.load_array(key, "embedding-abc")
    assert arr.shape == (1_000, 2) and meta == {"method": "pca"}
    assert again.list_arrays(key, "embedding") == ["embedding-abc"]


def test_user_names_never_become_paths(workspace_dir):
    ws = Workspace()
    path = ws.new_upload_path("../../etc/passwd")
    assert path.parent == ws.root / "uploads"
    try:
        ws.dataset_dir("../evil")
    except ValueError:
        pass
    else:
        raise AssertionError("a non-hash key must be refused")


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_leftovers_of_killed_writes_are_removed_on_open(workspace_dir, caplog):
    ws = Workspace()
    key = ws.add_dataset(make_demo(1_000))
    folder = ws.dataset_dir(key)
    stale = [folder / ".events.npy.k3x_9q.tmp", ws.labels_dir(key) / ".head.json.a1b2c3.tmp", ws.root / "uploads" / "f00d.fcs"]
    fresh = [folder / ".annotations.parquet.zz11yy.tmp", ws.root / "uploads" / "beef.fcs"]
    for path in stale + fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    for path in stale + [folder / "events.npy"]:
        _age(path, 2 * STALE_S)
    with caplog.at_level(logging.WARNING, logger="cytoauto_core.store.workspace"):
        reopened = Workspace(workspace_dir)
    assert [p.exists() for p in stale + fresh] == [False] * len(stale) + [True] * len(fresh)
    assert "Removed 3 file(s) left by interrupted writes or uploads" in caplog.text
    assert np.array_equal(reopened.load_dataset(key).events, make_demo(1_000).events), "real files are kept, old or not"


def _kill_after(ws: Workspace, dataset, before: str) -> str:
    """Store `dataset` as add_dataset does until it starts writing `before`, as a kill there leaves it; its key."""
    real = storage_module.atomic_file

    def killed(path):
        if path.name == before:
            raise KeyboardInterrupt("killed")
        return real(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage_module, "atomic_file", killed)
        patch.setattr("cytoauto_core.store.workspace.atomic_file", killed)
        with pytest.raises(KeyboardInterrupt):
            ws.add_dataset(dataset)
    return dataset.content_hash()


def test_a_dataset_folder_a_kill_left_without_dataset_json_is_removed_after_an_hour(workspace_dir, caplog):
    """A kill after events.npy leaves a folder no listing shows (576 MB in the review); the next opening deletes it
    once it is an hour old, never sooner, never while any add_dataset writes, and never beside labels or settings."""
    ws = Workspace()
    complete = ws.add_dataset(make_demo(1_000, seed=1))
    old = _kill_after(ws, make_demo(1_000, seed=2), before="dataset.json")
    assert {p.name for p in ws.dataset_dir(old).iterdir()} == {"events.npy", "sample_ids.npy", "annotations.parquet"}
    fresh = _kill_after(ws, make_demo(1_000, seed=3), before="sample_ids.npy")
    labelled = _kill_after(ws, make_demo(1_000, seed=4), before="dataset.json")
    (ws.dataset_dir(labelled) / "labels").mkdir()
    empty = ws.dataset_dir("e" * 64)
    empty.mkdir()
    for key in (complete, old, labelled, "e" * 64):
        for path in [ws.dataset_dir(key), *ws.dataset_dir(key).iterdir()]:
            _age(path, 2 * STALE_S)

    with directory_lock(ws.root / "datasets", exclusive=False):  # an add_dataset writing in another process
        Workspace(workspace_dir)
    assert all(ws.dataset_dir(k).exists() for k in (complete, old, fresh, labelled, "e" * 64))

    with caplog.at_level(logging.WARNING, logger="cytoauto_core.store.workspace"):
        reopened = Workspace(workspace_dir)
    assert not ws.dataset_dir(old).exists() and not empty.exists()
    assert ws.dataset_dir(fresh).exists() and ws.dataset_dir(labelled).exists() and ws.has_dataset(complete)
    assert "Removed 2 dataset folder(s) that interrupted loads left without dataset.json" in caplog.text
    assert reopened.add_dataset(make_demo(1_000, seed=2)) == old and reopened.has_dataset(old), "it can be loaded again"


def test_add_dataset_writes_dataset_json_last(workspace_dir, monkeypatch):
    """Every file is complete (written atomically) before dataset.json, whose presence marks a complete dataset."""
    written = []
    real = storage_module.atomic_file

    def recorded(path):
        written.append(path.name)
        return real(path)

    monkeypatch.setattr(storage_module, "atomic_file", recorded)
    monkeypatch.setattr("cytoauto_core.store.workspace.atomic_file", recorded)
    Workspace().add_dataset(make_demo(1_000))
    assert written == ["events.npy", "sample_ids.npy", "annotations.parquet", "dataset.json"]


def test_unreadable_entries_are_skipped_with_a_warning(workspace_dir, caplog):
    ws = Workspace()
    key = ws.add_dataset(make_demo(1_000))
    datasets = ws.root / "datasets"
    (datasets / "notes.txt").write_text("a stray file")
    (datasets / "not-a-key").mkdir()
    broken = {"a" * 16: b"{not json", "b" * 16: b'{"name": "x"}', "c" * 16: b"\xff\xfe", "d" * 16: b'{"name": "x", '
              b'"n_cells": "many", "channels": [], "samples": [], "created": 0}'}
    for name, text in broken.items():
        (datasets / name).mkdir()
        (datasets / name / "dataset.json").write_bytes(text)
    with caplog.at_level(logging.WARNING, logger="cytoauto_core.store.workspace"):
        assert [r.key for r in Workspace(workspace_dir).list_datasets()] == [key]
    for name in ["notes.txt", "not-a-key", *broken]:
        assert f"{name} in the workspace" in caplog.text
    assert not any(ws.has_dataset(k) for k in [*broken, "../../etc", "not-a-key", None, "", ["a" * 16]])
    assert ws.has_dataset(key)


def test_a_damaged_dataset_is_one_sentence(workspace_dir):
    ws = Workspace()
    key = ws.add_dataset(make_demo(1_000))
    (ws.dataset_dir(key) / "events.npy").unlink()
    with pytest.raises(CytoInputError, match=rf"^The stored dataset {key[:12]}… is damaged and cannot be opened\.$"):
        ws.load_dataset(key)


@pytest.mark.parametrize("url_key", ["../../etc", "not-a-key", "a" * 16, "damaged"])
def test_a_bad_dataset_in_the_url_opens_the_demo(workspace_dir, url_key):
    from streamlit.testing.v1 import AppTest

    ws = Workspace()
    damaged = url_key == "damaged"
    if url_key == "a" * 16:
        (ws.root / "datasets" / url_key).mkdir(parents=True)
        (ws.root / "datasets" / url_key / "dataset.json").write_text("{broken")
    if damaged:
        url_key = ws.add_dataset(make_demo(1_000, seed=5))
        (ws.dataset_dir(url_key) / "annotations.parquet").write_bytes(b"not parquet")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["dataset"] = url_key
    at.run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Cells"] == f"{DEMO_CELLS:,}"
    [demo] = [r.key for r in Workspace(workspace_dir).list_datasets() if r.n_cells == DEMO_CELLS]
    assert at.query_params["dataset"] == demo, "the URL now names the demo"
    assert [w.value for w in at.warning if "stored dataset" in w.value] == (
        [f"The stored dataset {url_key[:12]}… is damaged and cannot be opened."] if damaged else [])
