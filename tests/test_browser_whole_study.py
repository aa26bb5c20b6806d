"""Real-browser test of a study larger than the working-sample size: a link to the study opens its working sample
with the sentence saying so, a model trained there is applied to every cell of the study from the Results page in
the background, the exact counts per sample show, and the per-sample FCS files are written and downloaded."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from browser import chromium_page, streamlit_server, table_text, wait_for_app
from cytoauto_core.study import large_study
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.study.ingest import ingest
from cytoauto_core.io import read_file, write_fcs
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
from test_browser_journey import goto_page, train_and_apply

pytestmark = pytest.mark.browser
WORKING = 10_000  # the study holds about 14,600 cells


def test_a_large_study_is_labelled_whole_from_its_working_sample(tmp_path, monkeypatch):
    files = tmp_path / "files"
    files.mkdir()
    for sample in make_demo_study(6, 3_000):
        write_fcs(files / sample.name, sample.dataset)
    ws = Workspace(tmp_path / "ws")
    study_key = ingest([str(files / "*.fcs")], ws).key
    study = ws.load_dataset(study_key)
    # the working sample the server draws on first open, drawn here first so that an earlier session's labels are on it
    sample = large_study.working_sample(ws, study_key, study, max_cells=WORKING)
    part = ws.load_dataset(sample.key)
    truth = part.annotations["population"].astype(str).to_numpy()
    store = LabelStore(ws.labels_dir(sample.key), part.n_cells)
    for name in sorted(set(truth) - {"unassigned"}):
        store.assign(np.flatnonzero(truth == name)[:10], store.create_population(name))

    monkeypatch.setenv("CYTOAUTO_WORKING_CELLS", str(WORKING))
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(f"{url}/?dataset={study_key}")
        wait_for_app(page)
        page.get_by_text(f"This study has {study.n_cells:,} cells in 6 samples").wait_for()
        assert parse_qs(urlparse(page.url).query)["dataset"] == [sample.key], page.url

        train_and_apply(page, leave_out=("Logistic regression", "XGBoost"), apply="LDA")
        page.get_by_text("Trained on the working sample; apply it to every cell of the study").wait_for()
        goto_page(page, "Results")
        assert page.get_by_text(f"This study has {study.n_cells:,} cells").count() == 1, "said once per page"
        page.get_by_role("heading", name="Whole study").wait_for()
        page.get_by_role("button", name="Label every cell of the study").click()
        page.get_by_text(re.compile(f"{study.n_cells:,} cells labelled in")).wait_for(timeout=120_000)
        wait_for_app(page)
        text = table_text(page, *study.samples)
        assert all(name in text for name in study.samples), text

        page.get_by_role("button", name="Write per-sample FCS files").click()
        first = page.get_by_role("button", name=re.compile(r"demo_A1_labelled\.fcs"))
        first.wait_for(timeout=120_000)
        wait_for_app(page)
        buttons = page.get_by_test_id("stDownloadButton").filter(has_text="_labelled.fcs")
        assert buttons.count() == 6
        with page.expect_download() as info:
            first.click()
        path = tmp_path / "downloaded.fcs"
        info.value.save_as(path)
    downloaded = read_file(path)
    assert 0 < downloaded.n_cells == int((np.asarray(study.sample_ids) == 0).sum())
