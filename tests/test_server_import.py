"""The Data page's import from the server: hidden (one caption) without $CYTOAUTO_DATA, the data folder's readable
files listed, a pattern reaching outside refused in one sentence, and an import opening its dataset."""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.io import write_fcs
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.study.ingest import DATA_ENV_VAR
from ui.server_import import HOW_TO_ENABLE

APP = str(ROOT / "app.py")
SECTION = "Import files from the server"


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """A data folder with two small demo FCS files (one in a subfolder), a garbage .fcs and a file of another kind,
    served as $CYTOAUTO_DATA."""
    folder = tmp_path / "data"
    (folder / "run2").mkdir(parents=True)
    first, second = make_demo_study(2, 1_000)
    write_fcs(folder / first.name, first.dataset)
    write_fcs(folder / "run2" / second.name, second.dataset)
    (folder / "garbage.fcs").write_bytes(b"FCS3.0" + bytes(200))
    (folder / "notes.docx").write_bytes(b"not cytometry")
    monkeypatch.setenv(DATA_ENV_VAR, str(folder))
    return folder


def open_data_page(workspace_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def test_without_a_data_folder_only_a_caption_says_how_to_enable_it(workspace_dir, monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    at = open_data_page(workspace_dir)
    assert SECTION not in [e.label for e in at.expander]
    assert HOW_TO_ENABLE in [c.value for c in at.caption]
    assert "Import" not in [b.label for b in at.button]


def test_the_readable_files_are_listed_relative_to_the_data_folder(workspace_dir, data_folder):
    at = open_data_page(workspace_dir)
    assert SECTION in [e.label for e in at.expander] and HOW_TO_ENABLE not in [c.value for c in at.caption]
    every = next(c for c in at.checkbox if c.label.startswith("All "))
    assert every.label == "All 3 matching files" and every.value
    assert any(c.value.startswith("3 file(s) chosen, ") for c in at.caption)
    every.uncheck().run()
    picker = next(m for m in at.multiselect if m.label == "Files to import")
    assert sorted(picker.options) == ["demo_A1.fcs", "garbage.fcs", "run2/demo_B2.fcs"]
    assert next(b for b in at.button if b.label == "Import").disabled, "nothing chosen, nothing to import"
    picker.set_value(["run2/demo_B2.fcs"]).run()
    assert any(c.value.startswith("1 file(s) chosen, ") and c.value.endswith(" KB") for c in at.caption)
    next(t for t in at.text_input if t.label == "Files to list").input("run2/*").run()
    assert next(c for c in at.checkbox if c.label.startswith("All ")).label == "All 1 matching files"


@pytest.mark.parametrize("pattern", ["../*", "/etc/passwd", "run2/../../*"])
def test_a_pattern_outside_the_data_folder_is_refused_in_one_sentence(workspace_dir, data_folder, pattern):
    at = open_data_page(workspace_dir)
    next(t for t in at.text_input if t.label == "Files to list").input(pattern).run()
    assert not at.exception, at.exception
    [error] = [e.value for e in at.error]
    assert "is outside the data folder" in error and "only files under it can be imported" in error, error
    assert "Traceback" not in error and "\n" not in error
    assert "Import" not in [b.label for b in at.button]


def test_an_import_opens_its_dataset_and_says_which_files_were_skipped(workspace_dir, data_folder):
    (data_folder / "run2" / "[x](y).fcs").write_bytes(b"FCS3.0" + bytes(200))  # a name that is also a glob pattern
    at = open_data_page(workspace_dir)
    next(t for t in at.text_input if t.label == "Dataset name (optional)").input("two demo samples").run()
    next(b for b in at.button if b.label == "Import").click().run()
    deadline = time.time() + 120
    while not at.success and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    [done] = [s.value for s in at.success]
    assert done.startswith("Imported ") and " cells from 2 of 4 file(s) in " in done, done
    skipped = at.dataframe[0].value
    assert list(skipped["file"]) == ["garbage.fcs", "run2/[x](y).fcs"], skipped
    assert skipped["why"][0].startswith("'garbage.fcs' ") and skipped["why"][1].startswith("'[x](y).fcs' "), skipped
    [record] = [r for r in Workspace(workspace_dir).list_datasets() if r.name == "two demo samples"]
    assert len(record.samples) == 2 and at.query_params["dataset"] == record.key, "the new dataset is open"
    assert {m.label: m.value for m in at.metric}["Cells"] == f"{record.n_cells:,}"
