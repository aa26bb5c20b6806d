"""The label store: actions, undo/redo, persistence and concurrent writers."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from cytoauto_core.errors import CytoInputError
from cytoauto_core.labels import LabelStore


def test_assign_counts_and_persistence(tmp_path):
    store = LabelStore(tmp_path, 100)
    t = store.create_population("T cells")
    b = store.create_population("B cells")
    assert store.assign(np.arange(10), t) == 10
    assert store.assign(np.arange(5, 20), b) == 15
    reopened = LabelStore(tmp_path, 100)
    counts = reopened.counts().set_index("name")["cells"].to_dict()
    assert counts == {"T cells": 5, "B cells": 15}
    assert (reopened.labels()[5:20] == b).all()


def test_undo_redo_every_action(tmp_path):
    store = LabelStore(tmp_path, 50)
    t = store.create_population("T")
    store.assign(np.arange(10), t)
    store.rename(t, "T cells")
    store.unassign(np.arange(3))
    assert (store.labels() >= 0).sum() == 7
    assert store.undo()
    assert (store.labels() >= 0).sum() == 10
    assert store.undo()
    assert store.populations()[0].name == "T"
    assert store.redo() and store.redo()
    assert store.populations()[0].name == "T cells" and (store.labels() >= 0).sum() == 7
    assert not store.redo()
    store.undo()
    store.create_population("NK")
    assert not store.can_redo(), "a new action clears the redo stack"


def test_merge_and_delete(tmp_path):
    store = LabelStore(tmp_path, 30)
    a, b, c = (store.create_population(n) for n in "abc")
    store.assign(np.arange(0, 10), a)
    store.assign(np.arange(10, 20), b)
    store.assign(np.arange(20, 30), c)
    store.merge([b], a)
    assert [p.name for p in store.populations()] == ["a", "c"]
    assert (store.labels()[:20] == a).all()
    store.delete(c)
    assert (store.labels()[20:] == -1).all()
    store.undo()
    assert (store.labels()[20:] == c).all()


def test_duplicate_and_empty_names_refused(tmp_path):
    store = LabelStore(tmp_path, 10)
    store.create_population("T")
    with pytest.raises(CytoInputError):
        store.create_population("T")
    with pytest.raises(CytoInputError):
        store.create_population("  ")


def test_csv_roundtrip_and_annotation_import(tmp_path):
    store = LabelStore(tmp_path / "a", 40)
    truth = np.array(["x"] * 15 + ["y"] * 15 + ["unassigned"] * 10)
    assert store.import_annotation(truth, per_population=5, seed=1) == 10
    frame = store.to_frame()
    assert frame["population"].value_counts().to_dict() == {"x": 5, "y": 5}
    other = LabelStore(tmp_path / "b", 40)
    other.import_frame(pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False))))
    assert np.array_equal(other.labels() >= 0, store.labels() >= 0)
    with pytest.raises(CytoInputError):
        other.import_frame(pd.DataFrame({"cell_index": [99], "population": ["x"]}))


def _worker(directory: str, start: int) -> None:
    store = LabelStore(directory, 1000)
    pop = store.populations()[0].id
    for i in range(start, start + 100, 10):
        store.assign(np.arange(i, i + 10), pop)


def test_concurrent_writers_lose_nothing(tmp_path):
    store = LabelStore(tmp_path, 1000)
    store.create_population("T")
    procs = [mp.get_context("fork").Process(target=_worker, args=(str(tmp_path), s)) for s in (0, 100, 200, 300)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert (store.labels() >= 0).sum() == 400
    assert store.version() == 41
