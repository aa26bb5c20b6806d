"""A study enters without the browser carrying it: with $CYTOAUTO_DATA set, the Data page lists the server's files,
imports them all in a background job, opens the new dataset and names the file it skipped, with its reason."""
from __future__ import annotations

import pytest

from browser import chromium_page, click_when_still, streamlit_server, table_text, wait_for_app
from cytoauto_core.io import write_fcs
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.study.ingest import DATA_ENV_VAR

pytestmark = pytest.mark.browser
JOB_TIMEOUT_MS = 240_000  # the job waits for the server's TensorFlow import before it starts


def test_the_data_folder_is_imported_in_the_background_and_its_dataset_opens(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    study = make_demo_study(3, 2_000)
    for sample in study:
        write_fcs(data / sample.name, sample.dataset)
    (data / "garbage.fcs").write_bytes(b"FCS3.0   garbage" * 3)
    cells = sum(sample.dataset.n_cells for sample in study)
    monkeypatch.setenv(DATA_ENV_VAR, str(data))
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        expander = page.get_by_test_id("stExpander").filter(has_text="Import files from the server")
        click_when_still(expander.locator("summary"))
        page.get_by_text("All 4 matching files").wait_for()
        click_when_still(page.get_by_role("button", name="Import", exact=True))
        done = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Imported ")
        done.wait_for(timeout=JOB_TIMEOUT_MS)
        wait_for_app(page)
        assert done.inner_text().startswith(f"Imported {cells:,} cells from 3 of 4 file(s) in "), done.inner_text()
        sidebar = page.get_by_test_id("stSidebar").inner_text()
        assert "3 files" in sidebar and f"{cells:,} cells" in sidebar and "3 sample(s)" in sidebar, sidebar
        skipped = table_text(page, "garbage.fcs", "'garbage.fcs' ")
        assert "garbage.fcs" in skipped and "'garbage.fcs' " in skipped, skipped
        assert not page.get_by_test_id("stAlertContentError").count()
        opened = page.url

    [record] = [r for r in Workspace(tmp_path / "ws").list_datasets() if r.name == "3 files"]
    assert record.samples == [sample.name for sample in study] and record.n_cells == cells
    assert f"?dataset={record.key}" in opened, "the imported dataset is the open one"
