"""A refused upload does not block the next one: after Load refuses a file, its sentence stays on the page and the
uploader is empty, so the next file loads; a file added twice is loaded once."""
from __future__ import annotations

import pytest

from browser import chromium_page, streamlit_server, table_text, upload_files, wait_for_app
from conftest import CORPUS

pytestmark = pytest.mark.browser


def _chips(page) -> int:
    """How many files the Data page's uploader lists."""
    return page.get_by_test_id("stFileUploader").first.get_by_test_id("stFileChip").count()


def test_a_refused_file_leaves_the_uploader_empty_and_the_next_file_loads_once(tmp_path):
    bad, good = tmp_path / "broken.fcs", CORPUS / "flowio_G11.fcs"
    bad.write_bytes(b"FCS3.0   garbage" * 3)
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        upload_files(page, [bad])
        page.get_by_role("button", name="Load files").click()
        wait_for_app(page)
        error = page.get_by_test_id("stAlertContentError").first
        error.wait_for()
        assert error.inner_text().startswith("'broken.fcs' "), error.inner_text()
        assert _chips(page) == 0, "the refused file is not left in the uploader"

        upload_files(page, [good, good])
        assert not page.get_by_test_id("stAlertContentError").count(), "the next upload starts afresh"
        warning = page.get_by_test_id("stAlertContentWarning").first.inner_text()
        assert warning == "Added more than once, loaded once: flowio_G11.fcs.", warning
        page.get_by_role("button", name="Load files").click()
        page.get_by_test_id("stSidebar").get_by_text("flowio_G11.fcs").wait_for()  # the load reruns into the dataset
        wait_for_app(page)
        sidebar = page.get_by_test_id("stSidebar").inner_text()
        assert "flowio_G11.fcs" in sidebar and "5,785 cells" in sidebar and "1 sample(s)" in sidebar, sidebar
        assert not page.get_by_test_id("stAlertContentError").count()
        assert _chips(page) == 0
        assert "None" not in table_text(page, "FSC-A", "GFP-A"), "empty cofactor cells are blank"
