"""The workspace keeps datasets, settings and derived arrays across a restart."""
from __future__ import annotations

import numpy as np

from cytoauto_core.demo import make_demo
from cytoauto_core.workspace import Workspace


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
