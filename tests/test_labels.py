"""The label store: actions, undo/redo, persistence and concurrent writers."""
from __future__ import annotations

import io
import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.store.labels import LabelStore, read_label_file


def test_assign_counts_and_persistence(tmp_path):
    store = LabelStore(tmp_path, 100)
    t = store.create_population("T cells")
    b = store.create_population("B cells")
    assert store.assign(np.arange(10), t).changed == 10
    assert store.assign(np.arange(5, 20), b).changed == 15
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
    for reserved in ("unknown", "Unassigned"):  # what results call uncalled cells
        with pytest.raises(CytoInputError):
            store.create_population(reserved)


def test_population_named_finds_or_creates_by_cleaned_name(tmp_path):
    store = LabelStore(tmp_path, 10)
    t = store.create_population("T cells")
    assert store.population_named(" T cells ") == t and len(store.populations()) == 1
    b = store.population_named("B cells")
    assert b != t and [p.name for p in store.populations()] == ["T cells", "B cells"]
    with pytest.raises(CytoInputError):
        store.population_named("  ")


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


def test_assign_says_which_cells_it_took_from_other_populations(tmp_path):
    store = LabelStore(tmp_path, 100)
    t, nk, b = (store.create_population(n) for n in ("T cells", "NK cells", "Mature B"))
    store.assign(np.arange(0, 10), t)
    store.assign(np.arange(10, 16), nk)
    fresh = store.assign(np.arange(50, 60), b)
    assert (fresh.changed, fresh.moved, fresh.below_minimum, fresh.moved_sentence()) == (10, {}, [], "")
    taking = store.assign(np.arange(3, 20), b)
    assert taking.changed == 17 and taking.moved == {"T cells": 7, "NK cells": 6}
    assert taking.below_minimum == ["T cells", "NK cells"], "10 → 3 and 6 → 0 both fall below the minimum of 5"
    assert taking.moved_sentence() == "7 cells moved from T cells and 6 from NK cells."
    assert store.assign(np.arange(3, 20), b).moved == {}, "cells already in the population are not 'moved'"
    store.undo()  # the repeated assign changed nothing and recorded no step
    assert store.counts().set_index("name")["cells"].to_dict() == {"T cells": 10, "NK cells": 6, "Mature B": 10}
    assert store.assign([0], nk).moved_sentence() == "1 cell moved from T cells."


def test_population_drawn_inside_another_forms_a_tree_with_percentages(tmp_path):
    store = LabelStore(tmp_path, 200)
    lymph = store.create_population("Lymphocytes")
    store.assign(np.arange(0, 100), lymph)
    t = store.create_population("T cells")
    inside = store.assign(np.arange(0, 40), t, within=lymph)
    assert inside.moved == {"Lymphocytes": 40}
    cd4 = store.create_population("CD4")
    store.assign(np.arange(0, 10), cd4, within=t)
    assert sorted(store.members(lymph).tolist()) == list(range(100)), "a parent's members include its sub-populations"
    assert store.members(t).size == 40
    tree = store.tree().set_index("name")
    assert tree.index.tolist() == ["Lymphocytes", "T cells", "CD4"], "parents before children"
    assert tree["depth"].tolist() == [0, 1, 2]
    assert tree["own_cells"].tolist() == [60, 30, 10] and tree["cells"].tolist() == [100, 40, 10]
    assert tree["pct_of_all"].tolist() == [50.0, 20.0, 5.0]
    assert tree["pct_of_parent"].tolist() == [50.0, 40.0, 25.0]
    store.assign(np.arange(100, 110), lymph, within=cd4)
    assert store.populations()[0].parent is None, "no cycle: a population is never drawn inside its own descendant"
    store.delete(t)
    tree = store.tree().set_index("name")
    assert tree.at["CD4", "parent"] == lymph and tree.at["CD4", "depth"] == 1, "children move up to the grandparent"
    store.undo()
    assert store.tree().set_index("name").at["CD4", "parent"] == t


def test_import_with_chosen_columns_and_one_based_indices(tmp_path):
    store = LabelStore(tmp_path, 10)
    frame = pd.DataFrame({"Event": [1, 2, 10, 4], "Gate": ["B", "B", "T", ""]})
    assert store.import_frame(frame, cell_column="Event", population_column="Gate", first_index=1) == 3
    assert store.labels().tolist() == [0, 0] + [-1] * 7 + [1], "1-based 1, 2 and 10 are rows 0, 1 and 9; '' skipped"
    with pytest.raises(CytoInputError, match=r"^The label file's column 'Event' has values that are not cell indices "
                                             r"0–9 of this dataset \(0-based\)\.$"):
        store.import_frame(frame, cell_column="Event", population_column="Gate")
    with pytest.raises(CytoInputError, match=r"^A label file needs the columns 'cell_index' and 'population'\.$"):
        store.import_frame(frame)
    with pytest.raises(CytoInputError, match="two different columns"):
        store.import_frame(frame, cell_column="Gate", population_column="Gate")
    with pytest.raises(CytoInputError, match="not cell indices"):
        store.import_frame(pd.DataFrame({"i": [1.5], "p": ["B"]}), "i", "p", first_index=1)


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


def test_label_files_that_would_blow_up_or_name_huge_cells_are_one_sentence(tmp_path):
    """A header of 2 million columns or a row of 2 million values is refused before pandas reads it; cell indices
    far beyond the dataset (10^30, 1e300) are compared, never used to size anything."""
    many = ",".join(["1"] * 2_000_000)
    for text in (many.replace("1", "c") + "\n1\n", f"cell_index,population\n{many}\n",
                 f"cell_index,population\n1,T\n{many}\n"):
        with pytest.raises(CytoInputError, match=r"^'big.csv' "):
            read_label_file(io.BytesIO(text.encode()), "big.csv")
    frame = read_label_file(io.BytesIO(b"cell_index,population\n1,T\n" + b"1" * 31 + b",B\n1e300,B\n"), "huge.csv")
    store = LabelStore(tmp_path, 10)
    with pytest.raises(CytoInputError, match=r"^The label file's column 'cell_index' has values that are not cell "):
        store.import_frame(frame)
    assert store.labels().tolist() == [-1] * 10
