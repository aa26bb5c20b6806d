"""AppTests of a study larger than the working-sample size: every page opens on its stored working sample and says
so, the Train page says where the model goes next, the Results page labels every cell of the study in the
background, with exact counts per sample and one FCS file per sample, the Cluster page clusters every cell of the
study with exact counts per cluster and sample, the Map page places every cell of the study on a map of the working
sample (which the per-sample FCS files then carry), and the Compare page counts every cell once the study is labelled
whole."""
from __future__ import annotations

import sys
import threading
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.base.storage import atomic_write_json
from cytoauto_core.io import read_file, write_fcs
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study import large_study, samples
from cytoauto_core.study.abundance import count_table
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.study.ingest import ingest
from cytoauto_core.tools.clustering import ClusteringParams
from ui import study_cluster, study_panel
from ui.results import RESULT, StoredResult
from ui.study_panel import SUMMARY, TRAINED_ON_SAMPLE

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
    shown = [e.value for kind in (at.error, at.warning, at.caption) for e in kind]
    raise AssertionError(f"{what} never happened; the page showed: {shown}; threads: {_threads()}")


def _threads() -> list[str]:
    """Where each of this process's threads is: what a job that never ends was doing."""
    frames = sys._current_frames()
    return [f"{t.name}: " + " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                                        for f in reversed(traceback.extract_stack(frames[t.ident])[-6:]))
            for t in threading.enumerate() if t.ident in frames]


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


def test_the_cluster_page_clusters_every_cell_of_the_study(study, monkeypatch):
    ws, study_key, dataset = study
    # a fit subsample smaller than the study, as for a real large one (and a quicker test)
    monkeypatch.setattr(study_cluster, "ClusteringParams", partial(ClusteringParams, max_fit_cells=4_000))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = study_key
    at.run()
    at.switch_page("pages/cluster.py").run()
    assert not at.exception, at.exception
    assert "Whole study" in [h.value for h in at.subheader]
    next(n for n in at.number_input if n.label == "Clusters").set_value(6)
    next(n for n in at.number_input if n.label == "Seed").set_value(3)
    next(b for b in at.button if b.label == "Cluster every cell of the study").click().run()  # submits the form

    def table(a: AppTest) -> pd.DataFrame | None:
        return next((d.value for d in a.dataframe if "total" in d.value.columns), None)

    _wait(at, lambda a: table(a) is not None, "the whole-study clustering")
    cells = table(at)
    assert list(cells.index) == dataset.samples and list(cells.columns) == [f"C{c}" for c in range(1, 7)] + ["total"]
    folder = ws.dataset_dir(study_key) / "whole_study"
    clusters = np.load(folder / "clusters_6_3.npy", mmap_mode="r")
    assert clusters.shape == (dataset.n_cells,)
    expected = np.zeros((6, 6), np.int64)
    np.add.at(expected, (np.asarray(dataset.sample_ids), np.asarray(clusters)), 1)
    assert (cells.drop(columns="total").to_numpy() == expected).all(), "exact counts of every cell"
    assert (cells["total"].to_numpy() == np.bincount(dataset.sample_ids, minlength=6)).all()
    assert (folder / "clusters_6_3.json").is_file()
    said = " ".join(c.value for c in at.caption)
    assert "6 clusters (seed 3) fitted on a stratified subsample of 4,000 cells across samples and every one of " \
           f"the study's {dataset.n_cells:,} cells then assigned" in said
    assert "Download the cells per cluster per sample (CSV)" in {e.proto.label for e in at.get("download_button")}

    again = AppTest.from_file(APP, default_timeout=120)  # a reopened page shows the stored counts
    again.query_params["dataset"] = study_key
    again.run()
    again.switch_page("pages/cluster.py").run()
    assert not again.exception, again.exception
    assert (table(again).to_numpy() == cells.to_numpy()).all()


def _mean_percent(counts: np.ndarray, totals: np.ndarray, rows: list[int]) -> np.ndarray:
    return (100 * counts[rows] / totals[rows, None]).mean(axis=0)


def test_compare_counts_every_cell_of_the_study_once_it_is_labelled_whole(study):
    ws, study_key, dataset = study
    sample = large_study.working_sample(ws, study_key, dataset, max_cells=WORKING)  # the one the app opens
    part = ws.load_dataset(sample.key)
    truth = part.annotations["population"].astype(str).to_numpy()
    names = sorted(set(truth) - {"unassigned"})
    proba = np.full((part.n_cells, len(names)), 1 / len(names), np.float32)  # unassigned cells: below threshold
    known = np.isin(truth, names)
    proba[known] = np.eye(len(names), dtype=np.float32)[np.searchsorted(names, truth[known])]
    bundle_hash = "b" * 64
    ws.save_array(sample.key, RESULT, proba, {
        "model": "LDA", "bundle_hash": bundle_hash, "bundle_dir": "gone", "class_ids": list(range(len(names))),
        "class_names": names, "threshold": 0.5, "seed": 0, "n_labelled": 0, "metrics": {}, "seconds": 0.0})
    conditions = ["ctrl"] * 3 + ["treated"] * 3
    samples.save(ws, sample.key, samples.validate(samples.template(dataset.samples).assign(condition=conditions),
                                                  dataset.samples))

    def opened() -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params["dataset"] = study_key
        at.run()
        at.switch_page("pages/compare.py").run()
        assert not at.exception, at.exception
        return at

    def mean_percents(at: AppTest) -> np.ndarray:
        da = next(d.value for d in at.dataframe if "mean % treated" in d.value.columns)
        assert da["population"].tolist() == names
        return da["mean % treated"].to_numpy(float)

    at = opened()
    said = " ".join(c.value for c in at.caption)
    assert f"The counts below are the working sample's ({part.n_cells:,} cells drawn across samples) until " \
           "**Whole study** labels every cell of the study with **LDA** on the **Results** page." in said
    on_sample = count_table(np.where(known, np.searchsorted(names, truth), -1), dict(enumerate(names)),
                            part.sample_ids, dataset.samples)
    assert np.allclose(mean_percents(at), _mean_percent(on_sample.counts.to_numpy(), on_sample.totals.to_numpy(),
                                                        [3, 4, 5]))

    # a Whole study run of that model, as ui/study_panel.py stores it: its columns are unknown, unassigned, then names
    study_truth = dataset.annotations["population"].astype(str).to_numpy()
    whole = np.stack([np.zeros(6, np.int64)] + [np.bincount(dataset.sample_ids[study_truth == n], minlength=6)
                                                for n in ["unassigned", *names]], axis=1)
    atomic_write_json(ws.dataset_dir(study_key) / "whole_study" / bundle_hash / SUMMARY, {
        "model": "LDA", "bundle_hash": bundle_hash, "threshold": 0.5, "rejection": 0.0,
        "class_ids": list(range(len(names))), "class_names": names, "n_cells": dataset.n_cells, "seconds": 1.0,
        "samples": dataset.samples, "populations": ["unknown", "unassigned", *names], "counts": whole.tolist()})
    at = opened()
    said = " ".join(c.value for c in at.caption)
    assert f"Counts of every cell of the study (whole-study result of **LDA**): {dataset.n_cells:,} cells in 6 " \
           "samples" in said
    exact = _mean_percent(whole[:, 2:], whole.sum(axis=1), [3, 4, 5])
    assert np.allclose(mean_percents(at), exact)
    assert not np.allclose(exact, _mean_percent(on_sample.counts.to_numpy(), on_sample.totals.to_numpy(), [3, 4, 5]))

    at.slider[0].set_value(0.7).run()  # counts made at another threshold: the working sample's, and why
    said = " ".join(c.value for c in at.caption)
    assert "the whole-study counts of **LDA** were made at confidence threshold 0.50, not 0.70" in said
    assert np.allclose(mean_percents(at), _mean_percent(on_sample.counts.to_numpy(), on_sample.totals.to_numpy(),
                                                        [3, 4, 5]))


def test_the_map_page_places_every_cell_of_the_study_on_the_working_sample_map(study):
    ws, study_key, dataset = study
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = study_key
    at.run()
    sample_key = at.query_params["dataset"]
    at.switch_page("pages/map.py").run()
    assert not at.exception, at.exception
    next(s for s in at.selectbox if s.label == "Method").set_value("pca")
    next(b for b in at.button if b.label == "Compute map").click().run()

    def placing(a: AppTest) -> bool:  # the map shown and its job's progress bar gone
        return any(b.label == "Place every cell of the study on this map" for b in a.button) and not a.get("progress")

    _wait(at, placing, "the PCA map")
    next(b for b in at.button if b.label == "Place every cell of the study on this map").click().run()
    sentence = f"Every one of the study's {dataset.n_cells:,} cells has a position on this map"
    _wait(at, lambda a: any(sentence in c.value for c in a.caption), "the whole-study placement")

    [name] = [n for n in ws.list_arrays(sample_key, "embedding-")]
    coords = np.asarray(ws.load_array(sample_key, name)[0])
    folder = ws.dataset_dir(study_key) / "whole_study"
    placed = np.load(folder / f"map_{name.removeprefix('embedding-')}.npy", mmap_mode="r")
    assert placed.shape == (dataset.n_cells, 2) and np.isfinite(placed).all(), "one finite row per study cell"
    rows = np.asarray(ws.load_array(sample_key, large_study.ROWS_ARRAY)[0])
    assert (placed[rows] == coords.astype(np.float32)).all(), "the working sample's cells keep their map positions"
    assert (folder / f"map_{name.removeprefix('embedding-')}.json").is_file()

    # the Results page's per-sample FCS export takes map_x/map_y from it
    labelled = folder / ("c" * 64)
    labelled.mkdir()
    np.save(labelled / "population_id.npy", np.zeros(dataset.n_cells, np.int16))
    np.save(labelled / "confidence.npy", np.ones(dataset.n_cells, np.float32))
    summary = {"class_ids": [0], "class_names": ["cells"]}
    map_file = folder / f"map_{name.removeprefix('embedding-')}.npy"
    study_panel._export_work(dataset, labelled, summary, {}, map_file)(lambda f, m: None, lambda: False)
    first = read_file(labelled / "fcs" / f"{Path(dataset.samples[0]).stem}_labelled.fcs")
    mine = np.flatnonzero(np.asarray(dataset.sample_ids) == 0)
    assert np.allclose(first.events[:, first.channel_index(["map_x", "map_y"])], placed[mine])
