"""The marker table in the app without a browser: stored in the workspace (a damaged file is one sentence), typed in
the grid and checked as a file is, its populations adopted by name, and the Label page's tab and the Train page on the
demo (AppTest)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import LEVINE, ROOT
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io.marker_table import MarkerTable, read_marker_table
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import MARKER_TABLE, Workspace
from ui.marker_table_panel import TABLE_CALLS, TYPED, grid_frame, table_from_grid, use_populations

TABLE = LEVINE / "knowledge_table" / "levine32_expected_expression.csv"
SMALL = MarkerTable(["CD4 T cells", "B cells"], ["CD3", "CD4", "CD19"], np.array([[1, 1, -1], [-1, 0, 1]], np.int8))


def _workspace_with_dataset(root) -> tuple[Workspace, str]:
    ws = Workspace(root)
    key = "ab" * 8
    ws.dataset_dir(key).mkdir(parents=True)
    return ws, key


def test_the_workspace_stores_a_marker_table_and_refuses_a_damaged_one_in_one_sentence(tmp_path):
    ws, key = _workspace_with_dataset(tmp_path)
    assert ws.load_marker_table(key) is None
    ws.save_marker_table(key, SMALL)
    loaded = ws.load_marker_table(key)
    assert loaded.to_dict() == SMALL.to_dict()
    for damaged in ("{not json", '{"populations": ["A"], "markers": ["CD3"], "values": [[7]]}', "[1, 2]"):
        (ws.dataset_dir(key) / MARKER_TABLE).write_text(damaged)
        with pytest.raises(CytoInputError, match=r"^The stored marker table is damaged, so it was not loaded"):
            ws.load_marker_table(key)
    ws.save_marker_table(key, None)
    assert ws.load_marker_table(key) is None and not (ws.dataset_dir(key) / MARKER_TABLE).exists()


def test_the_grid_shows_a_table_and_reads_back_what_was_typed_as_a_file_is_read():
    frame = grid_frame(SMALL, ["CD45"])
    assert frame.columns.tolist() == ["population", "CD3", "CD4", "CD19"]
    assert frame.iloc[1].tolist() == ["B cells", "−1", None, "+1"]
    assert table_from_grid(frame, TYPED).to_dict() == SMALL.to_dict()

    empty = grid_frame(None, ["CD3", "CD4"])
    assert empty.columns.tolist() == ["population", "CD3", "CD4"] and empty.empty
    assert table_from_grid(empty, TYPED) is None
    empty.loc[0] = [None, None, None]  # a row added and left blank
    assert table_from_grid(empty, TYPED) is None

    empty.loc[0] = ["T cells", "+1", None]
    empty.loc[1] = ["Other", "−1", "+1"]
    assert table_from_grid(empty, TYPED).values.tolist() == [[1, 0], [-1, 1]]
    empty.loc[2] = [None, "+1", None]
    with pytest.raises(CytoInputError, match="^'marker table' has a row with values but no population name"):
        table_from_grid(empty, TYPED)


def test_using_the_tables_populations_creates_only_the_missing_ones_by_name_and_stores_the_table(tmp_path):
    ws, key = _workspace_with_dataset(tmp_path)
    store = LabelStore(ws.labels_dir(key), 100)
    mine = store.create_population("cd4_T_cells", "#123456")
    store.assign(np.arange(10), mine)
    assert use_populations(ws, key, store, SMALL) == ["B cells"]
    assert [(p.name, p.color) for p in store.populations()][0] == ("cd4_T_cells", "#123456")
    assert [p.name for p in store.populations()] == ["cd4_T_cells", "B cells"]
    assert (store.labels() >= 0).sum() == 10, "no cell is labelled by adopting the table"
    assert ws.load_marker_table(key).to_dict() == SMALL.to_dict()
    assert use_populations(ws, key, store, SMALL) == [], "a second press creates nothing"


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _uploader(at: AppTest):
    return next(u for u in at.file_uploader if u.label.startswith("Marker table"))


def _texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def test_the_label_pages_marker_table_tab_names_the_demos_cells_and_the_train_page_offers_the_table(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page("pages/train.py").run()
    assert not any("Marker table" in m for m in _texts(at, "markdown")), "no table: the Train page is as before"
    at.switch_page("pages/label.py").run()
    assert not at.exception and not any(u.label.startswith("Marker table") for u in at.file_uploader), \
        "the Marker table tab runs only when open"
    at.session_state["label-tab"] = "Marker table"
    at.run()
    assert not at.exception, at.exception
    _uploader(at).set_value(("broken.csv", b"population,CD3\nT cells,maybe\n", "text/csv")).run()
    assert _texts(at, "error") == ["'broken.csv' gives population 'T cells' the value 'maybe' for marker 'CD3'; use 1 "
                                   "(expressed), -1 (not expressed) or leave it blank (not informative)."]

    _uploader(at).set_value((TABLE.name, TABLE.read_bytes(), "text/csv")).run()
    assert not _texts(at, "error")
    assert "14 populations; 14 of the table's 14 markers are features in use." in _texts(at, "caption")
    _button(at, "Name cells from the table").click().run()
    end = time.time() + 120
    while not any(b.label == "Use the table's populations" for b in at.button) and time.time() < end:
        time.sleep(1)
        at.run()
    assert not at.exception and "Cells named from the table" in _texts(at, "subheader")
    counts = at.dataframe[-1].value.set_index("population")
    assert counts["cells"].sum() == 20_000 and 3_000 < counts.at["CD4 T cells", "cells"] < 7_000, counts
    assert counts.at["CD4 T cells", "explanation"].startswith(f"CD4 T cells ({counts.at['CD4 T cells', 'cells']:,} "
                                                               "cells): ")
    key = at.query_params["dataset"]
    key = key[0] if isinstance(key, list) else key
    calls, meta = Workspace(workspace_dir).load_array(key, TABLE_CALLS)
    assert calls.shape == (20_000,) and meta["populations"] == read_marker_table(TABLE.read_bytes(), "t").populations

    _button(at, "Use the table's populations").click().run()
    assert _texts(at, "info")[-1].startswith("Created 14 of the table's 14 populations")
    assert any(b.label == "Stop training with the marker table" for b in at.button)

    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert "**Marker table:** 14 populations; 0 have clicked cells." in _texts(at, "markdown")
    use = next(c for c in at.checkbox if c.label == "Use the marker table")
    assert use.value and any(b.label == "Train and apply" for b in at.button), "no clicks needed with a table"
    use.uncheck().run()
    assert any(i.startswith("Label at least two populations") for i in _texts(at, "info"))

    next(c for c in at.checkbox if c.label == "Use the marker table").check().run()
    next(s for s in at.selectbox if s.label == "Model to apply to every cell").set_value("LDA").run()
    _button(at, "Train and apply").click().run()
    end = time.time() + 300
    while not any("Trained and applied" in s for s in _texts(at, "success")) and time.time() < end:
        time.sleep(1)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    provenance = Workspace(workspace_dir).load_array(key, "result-proba")[1]["provenance"]
    assert provenance and all(sentence in _texts(at, "info") for sentence in provenance), provenance
    assert any(c.startswith("No model was scored on held-out labels") for c in _texts(at, "caption"))
