"""AppTests of a study larger than the working-sample size: every page opens on its stored working sample and says
so, the Train page says where the model goes next, and the Results page labels every cell of the study in the
background, with exact counts per sample and one FCS file per sample."""
from __future__ import annotations

import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core import large_study
from cytoauto_core.demo import make_demo_study
from cytoauto_core.ingest import ingest
from cytoauto_core.io import write_fcs
from cytoauto_core.labels import LabelStore
from cytoauto_core.workspace import Workspace
from ui.results import RESULT, StoredResult
from ui.study_panel import TRAINED_ON_SAMPLE

APP = str(ROOT / "app.py")
WORKING = 5_000  # the study holds about 14,000 cells


@pytest.fixture
def study(workspace_dir, tmp_path, monkeypatch):
    """A six-sample demo study stored in the test's workspace, with the working-sample size set below it."""
    monkeypatch.setattr(large_study, "WORKING_CELLS", WORKING)
    files = tmp_path / "files"
    files.mkdir()
    for sample in make_demo_study(6, 3_000):
        write_fcs(files / sample.name, sample.dataset)
    ws = Workspace(workspace_dir)
    key = ingest([str(files / "*.fcs")], ws).key
    return ws, key, ws.load_dataset(key)


def _wait(at: AppTest, done, what: str, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} never happened")


def _sentences(at: AppTest) -> list[str]:
    return [i.value for i in at.info if "working sample" in i.value]


def test_a_large_study_opens_on_its_working_sample_and_is_labelled_whole(study):
    ws, study_key, dataset = study
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = study_key
    at.run()
    assert not at.exception, at.exception
    [sentence] = _sentences(at)
    assert f"This study has {dataset.n_cells:,} cells in 6 samples" in sentence
    sample_key = at.query_params["dataset"]
    assert sample_key != study_key, "the URL names the working sample, so a refresh opens the same cells"
    sample = ws.load_dataset(sample_key)
    assert WORKING - 10 <= sample.n_cells <= WORKING and large_study.study_of(ws, sample) == study_key
    assert f"working sample of {sample.n_cells:,} cells" in sentence
    assert {m.label: m.value for m in at.metric}["Cells"] == f"{sample.n_cells:,}"

    for page in ("pages/explore.py", "pages/label.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert len(_sentences(at)) == 1, page

    truth = sample.annotations["population"].astype(str).to_numpy()
    store = LabelStore(ws.labels_dir(sample_key), sample.n_cells)
    for name in sorted(set(truth) - {"unassigned"}):
        store.assign(np.flatnonzero(truth == name)[:10], store.create_population(name))

    at.switch_page("pages/train.py").run()
    assert TRAINED_ON_SAMPLE in [c.value for c in at.caption]
    at.multiselect[0].set_value(["LDA"])
    at.selectbox[0].set_value("LDA")
    next(b for b in at.button if b.label == "Train and apply").click().run()
    _wait(at, lambda a: any("Trained and applied" in s.value for s in a.success), "training")

    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    assert "Whole study" in [h.value for h in at.subheader]
    next(b for b in at.button if b.label == "Label every cell of the study").click().run()

    def counted(a: AppTest) -> bool:
        return any("total" in d.value.columns for d in a.dataframe)

    _wait(at, counted, "the whole-study labelling")
    cells = next(d.value for d in at.dataframe if "total" in d.value.columns)
    assert list(cells.index) == dataset.samples, "one row per sample"
    assert int(cells["total"].sum()) == dataset.n_cells, "every cell of the study is counted once"
    assert (cells["total"].to_numpy() == np.bincount(dataset.sample_ids, minlength=6)).all()
    assert (cells.drop(columns="total").sum(axis=1) == cells["total"]).all()
    shares = next(d.value for d in at.dataframe if list(d.value.index) == dataset.samples and "total" not in d.value)
    assert np.allclose(shares.sum(axis=1), 100)

    [folder] = (ws.dataset_dir(study_key) / "whole_study").iterdir()
    whole = np.load(folder / "population_id.npy", mmap_mode="r")
    rows = np.asarray(ws.load_array(sample_key, large_study.ROWS_ARRAY)[0])
    on_sample = StoredResult(*ws.load_array(sample_key, RESULT)).cells(0.5).population_id
    assert (whole[rows] == on_sample).mean() > 0.999, "the study's cells in the sample get the Results page's calls"

    next(b for b in at.button if b.label == "Write per-sample FCS files").click().run()

    def offered(a: AppTest) -> set[str]:
        return {e.proto.label for e in a.get("download_button")}

    _wait(at, lambda a: any(".fcs" in label for label in offered(a)), "the per-sample FCS export")
    fcs = sorted(label for label in offered(at) if ".fcs" in label)
    assert len(fcs) == 6 and all("_labelled.fcs" in label for label in fcs), fcs
    written = sorted((ws.dataset_dir(study_key) / "whole_study").glob("*/fcs/*_labelled.fcs"))
    assert len(written) == 6
