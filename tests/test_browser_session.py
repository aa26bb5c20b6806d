"""Real-browser test of a session sent to a colleague: downloaded from one app, opened in a second app on a fresh,
empty workspace, which then has the same populations, labelled cells and transform setting."""
from __future__ import annotations

import numpy as np
import pytest

from browser import chromium_page, streamlit_server, upload_files, wait_for_app
from cytoauto_core.study.demo import ensure_demo
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.prep.transforms import default_spec
from cytoauto_core.store.workspace import Workspace
from test_browser_journey import saved_counts

pytestmark = pytest.mark.browser
PANEL = "Session: save or open"


def _labelled_workspace(root) -> None:
    """The sender's workspace: the demo with two named populations and a cofactor of 150 instead of 5."""
    ws = Workspace(root)
    key = ensure_demo(ws)
    dataset = ws.load_dataset(key)
    store = LabelStore(ws.labels_dir(key), dataset.n_cells)
    store.assign(np.arange(0, 300), store.create_population("T cells", "#aa0000"))
    store.assign(np.arange(1000, 1120), store.create_population("B cells", "#0000aa"))
    ws.save_settings(key, {"transform": {**default_spec(dataset).to_dict(), "cofactor": 150.0}})


def test_a_downloaded_session_restores_labels_and_settings_in_a_fresh_workspace(tmp_path):
    sender, receiver, log = tmp_path / "sender", tmp_path / "receiver", tmp_path / "server.log"
    _labelled_workspace(sender)
    session = tmp_path / "demo_session.zip"
    with streamlit_server(sender, log) as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        page.get_by_text(PANEL).click()
        page.get_by_role("button", name="Prepare session file").click()
        with page.expect_download(timeout=60_000) as info:
            page.get_by_role("button", name="Download session (.zip)").click()
        info.value.save_as(session)
    assert session.stat().st_size > 0

    with streamlit_server(receiver, log) as url, chromium_page() as page:
        def transform(text: str):
            """The Data page's summary line saying which transform is in use."""
            return page.get_by_test_id("stMarkdownContainer").filter(has_text=f"Transform: {text}").first

        page.goto(url)
        wait_for_app(page)
        transform("arcsinh(x / 5)").wait_for()  # the fresh workspace's own default
        page.get_by_text(PANEL).click()
        upload_files(page, [session], "Open a session file")
        page.get_by_role("button", name="Open session").click()
        page.get_by_text("2 population(s), 420 labelled cells", exact=False).first.wait_for(timeout=60_000)
        transform("arcsinh(x / 150)").wait_for()
    assert saved_counts(receiver) == {"T cells": 300, "B cells": 120}
