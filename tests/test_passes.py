"""Per-cell passes over a stored study: chunk by chunk they give what the in-memory path gives, in this process, on
an embedded Dask cluster and on a cluster started outside the project (`dask scheduler`, two `dask worker`s)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from cytoauto_core.study.abundance import count_table
from cytoauto_core.base.chunks import ArrayFile, RowAppender, gather_rows, iter_rows, read_rows
from cytoauto_core.tools.clustering.flowsom import ClusteringParams, FlowSOM
from cytoauto_core.base.dataset import NOT_CALLED
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.tools.embeddings import EmbeddingParams, embed
from cytoauto_core.study.ingest import ingest
from cytoauto_core.io import write_fcs
from cytoauto_core.base.contracts import JobCancelled
from cytoauto_core.study.large_study import cluster_study, map_study, summarise, train_study
from cytoauto_core.tools.models.bundle import load_bundle, predict_dataset
from cytoauto_core.study.passes import (MapPlacer, assign_clusters, count_per_sample, place_cells, predict_cells,
                                  stratified_rows)
from cytoauto_core.tools.training import TrainingRequest
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.store.workspace import Workspace

CHUNK = 4_000  # several chunks per sample


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Several chunks per sample, so every pass stitches chunk results together."""
    monkeypatch.setattr("cytoauto_core.study.passes.CHUNK_ROWS", CHUNK)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A six-sample demo study imported into a workspace (events memory-mapped), its spec and an LDA bundle trained
    by train_study on 10 ground-truth labels per population."""
    folder = tmp_path_factory.mktemp("passes")
    for sample in make_demo_study(6, 6_000):
        write_fcs(folder / sample.name, sample.dataset)
    workspace = Workspace(folder / "ws")
    ds = workspace.load_dataset(ingest([str(folder / "*.fcs")], workspace).key)
    spec = default_spec(ds)
    truth = ds.annotations["population"].astype(str).to_numpy()
    names = sorted(set(truth) - {"unassigned"})
    rng = np.random.default_rng(0)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(truth == n), 10, replace=False) for n in names]))
    ids = np.searchsorted(names, truth[rows])
    outcome = train_study(ds, spec, rows, ids, dict(enumerate(names)), TrainingRequest(compare=[], apply="LDA"),
                          folder / "models", lambda f, m: None, lambda: False)
    return folder, ds, spec, outcome.bundle_dir, dict(enumerate(names))


def test_chunked_reads_and_writes_round_trip(tmp_path):
    x = np.random.default_rng(0).random((10_001, 7)).astype(np.float32)
    appender = RowAppender(tmp_path / "x.npy", (7,))
    for start in range(0, len(x), 3_000):
        appender.append(x[start:start + 3_000])
    appender.close()
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(mapped, x)
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in iter_rows(mapped, 999)]), x)
    np.testing.assert_array_equal(read_rows(mapped, 5_000, 5_003), x[5_000:5_003])
    picks = np.sort(np.random.default_rng(1).choice(len(x), 500, replace=False))
    np.testing.assert_array_equal(gather_rows(mapped, picks, 1_000), x[picks])
    out = ArrayFile.create(tmp_path / "y.npy", (len(x), 2), np.float32)
    for start in reversed(range(0, len(x), 4_000)):  # any order, as workers finish
        out.write_rows(start, x[start:start + 4_000, :2])
    np.testing.assert_array_equal(out.open(), x[:, :2])


def test_counts_per_sample_of_a_stored_result_are_summed_chunk_by_chunk(tmp_path):
    rng = np.random.default_rng(0)
    n = 3 * CHUNK + 17  # several chunks, the last one short
    values, ids = rng.integers(0, 7, n).astype(np.int16), np.sort(rng.integers(0, 5, n)).astype(np.int32)
    np.save(tmp_path / "values.npy", values)
    np.save(tmp_path / "ids.npy", ids)
    counts = count_per_sample(np.load(tmp_path / "values.npy", mmap_mode="r"),
                              np.load(tmp_path / "ids.npy", mmap_mode="r"), 6, range(7))
    assert counts.shape == (6, 7) and counts.sum() == n and not counts[5].any(), "a sample without cells counts 0"
    expected = np.zeros((6, 7), np.int64)
    np.add.at(expected, (ids, values), 1)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(count_per_sample(values, ids, 6, range(7)), expected)  # in memory as well


def test_cluster_assignment_is_flowsom_predict_on_every_cell(stored, tmp_path):
    _, ds, spec, _, _ = stored
    x = transform_features(ds, spec)
    model = FlowSOM(ClusteringParams(n_clusters=12, seed=0)).fit(x)
    clusters = assign_clusters(ds, spec, model, tmp_path / "c.npy")
    np.testing.assert_array_equal(clusters, model.predict(x))
    study_model, study_clusters = cluster_study(ds, spec, ClusteringParams(n_clusters=12, seed=0), tmp_path / "s.npy")
    assert study_clusters.shape == (ds.n_cells,) and set(np.unique(study_clusters)) == set(range(12))


def test_prediction_pass_equals_the_whole_dataset_prediction_and_counts(stored, tmp_path):
    _, ds, spec, bundle_dir, names = stored
    whole = predict_dataset(load_bundle(str(bundle_dir)), np.asarray(ds.events), ds.channel_names, ds.spillover, 0.5)
    study = predict_cells(ds, bundle_dir, tmp_path / "p", threshold=0.5)
    np.testing.assert_array_equal(study.population_id, whole.labels)
    np.testing.assert_array_equal(study.confidence, whole.confidence)
    np.testing.assert_array_equal(study.novelty, whole.novelty)
    expected = count_table(whole.labels, names, ds.sample_ids, ds.samples)
    assert study.counts[list(names.values())].equals(expected.counts)
    assert (study.counts.sum(axis=1) == expected.totals).all()
    for code, name in NOT_CALLED.items():
        assert list(study.counts[name]) == [int(((whole.labels == code) & (ds.sample_ids == s)).sum())
                                            for s in range(len(ds.samples))]


def test_map_places_every_cell_where_the_fitted_map_would(stored, tmp_path):
    _, ds, spec, _, _ = stored
    x = transform_features(ds, spec)
    model = FlowSOM(ClusteringParams(seed=0)).fit(x)
    coords, text = map_study(ds, spec, EmbeddingParams(method="pca", seed=0, max_fit_cells=5_000), model,
                             tmp_path / "m.npy")
    assert coords.shape == (ds.n_cells, 2) and np.isfinite(coords).all()
    rows = stratified_rows(ds, 5_000, 0)
    assert 4_990 <= rows.size <= 5_000 and set(ds.sample_ids[rows]) == set(range(6))
    assert text == (f"PCA fitted on {rows.size:,} cells across samples (seed 0); the {ds.n_cells - rows.size:,} "
                    "others placed by their nearest fitted cells within their SOM node.")
    np.testing.assert_allclose(coords[rows], embed(x[rows], EmbeddingParams(method="pca")).coords, atol=1e-5)
    others = np.setdiff1d(np.arange(ds.n_cells), rows)
    # a PCA map is linear: recover it from the fitted cells and compare where it puts the placed ones
    design = np.c_[x[rows], np.ones(rows.size)]
    projection = np.linalg.lstsq(design, np.asarray(coords)[rows], rcond=None)[0]
    exact = np.c_[x[others], np.ones(others.size)] @ projection
    error = np.linalg.norm(np.asarray(coords)[others] - exact, axis=1)
    assert np.median(error) < 0.05 * np.ptp(exact, axis=0).mean()
    placer = MapPlacer.fit(x[rows], np.asarray(coords)[rows], model, rows)
    np.testing.assert_array_equal(place_cells(ds, spec, placer, tmp_path / "again.npy"), coords)


def test_summary_is_a_stated_subsample_across_samples(stored):
    _, ds, spec, _, _ = stored
    summary = summarise(ds, spec, seed=3, max_cells=6_000)
    assert 5_990 <= summary.rows.size <= 6_000 and set(ds.sample_ids[summary.rows]) == set(range(6))
    np.testing.assert_array_equal(summary.rows, summarise(ds, spec, seed=3, max_cells=6_000).rows)
    assert list(summary.stats.index) == spec.features and summary.stats["skewness"].notna().all()
    assert summary.description == f"statistics of {summary.rows.size:,} cells drawn across samples (seed 3)"


def test_a_pass_stops_when_cancelled(stored, tmp_path):
    _, ds, spec, bundle_dir, _ = stored
    asked = []
    with pytest.raises(JobCancelled):
        predict_cells(ds, bundle_dir, tmp_path / "p", should_stop=lambda: asked.append(1) or len(asked) > 2)


def test_embedded_dask_cluster_gives_the_same_labels(stored, tmp_path):
    from distributed import Client, LocalCluster

    _, ds, spec, bundle_dir, _ = stored
    here = predict_cells(ds, bundle_dir, tmp_path / "here")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        there = predict_cells(ds, bundle_dir, tmp_path / "there", client=client)
    np.testing.assert_array_equal(there.population_id, here.population_id)
    assert there.counts.equals(here.counts)


def test_a_cluster_started_outside_the_project(stored, tmp_path):
    """`dask scheduler` and two `dask worker` processes, as a lab would start them; the passes run there."""
    from distributed import Client

    _, ds, spec, bundle_dir, _ = stored
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    address_file = tmp_path / "scheduler.json"
    processes = [subprocess.Popen([dask, "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                                   str(address_file)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not address_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        processes += [subprocess.Popen([dask, "worker", "--scheduler-file", str(address_file), "--nthreads", "1",
                                        "--no-dashboard"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for _ in range(2)]
        with Client(scheduler_file=str(address_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            model = FlowSOM(ClusteringParams(seed=0)).fit(transform_features(ds, spec))
            clusters = assign_clusters(ds, spec, model, tmp_path / "c.npy", client)
            there = predict_cells(ds, bundle_dir, tmp_path / "there", client=client)
            workers = client.scheduler_info()["workers"]
        here = predict_cells(ds, bundle_dir, tmp_path / "here")
        np.testing.assert_array_equal(clusters, model.predict(transform_features(ds, spec)))
        np.testing.assert_array_equal(there.population_id, here.population_id)
        assert there.counts.equals(here.counts)
        assert len(workers) == 2
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_a_large_study_gets_one_stored_working_sample(stored, monkeypatch):
    from cytoauto_core.study import large_study

    folder, ds, _, _, _ = stored
    workspace = Workspace(folder / "ws")
    key = ds.content_hash()
    assert not large_study.is_large(ds)
    monkeypatch.setattr(large_study, "WORKING_CELLS", 10_000)
    assert large_study.is_large(ds)
    sample = large_study.working_sample(workspace, key, ds, max_cells=10_000)
    part = workspace.load_dataset(sample.key)
    assert 9_990 <= part.n_cells <= 10_000 and set(part.sample_ids) == set(range(6))
    np.testing.assert_array_equal(part.events, np.asarray(ds.events)[sample.rows])
    assert large_study.study_of(workspace, part) == key and not large_study.is_large(part)
    again = large_study.working_sample(workspace, key, ds, max_cells=10_000)
    assert again.key == sample.key and np.array_equal(again.rows, sample.rows)
    assert sample.sentence(ds).startswith(f"This study has {ds.n_cells:,} cells in 6 samples. The pages show a "
                                          f"working sample of {part.n_cells:,} cells drawn across all samples (seed 0)")


def test_command_line_labels_a_stored_study(stored, tmp_path):
    folder, ds, _, bundle_dir, names = stored
    run = subprocess.run([sys.executable, "-m", "cytoauto_core", "label-study", "--workspace", str(folder / "ws"),
                          "--dataset", ds.content_hash(), "--model", str(bundle_dir), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    here = predict_cells(ds, bundle_dir, tmp_path / "here")
    counts = pd.read_csv(tmp_path / "out" / "abundance.csv", index_col="sample")
    assert counts.equals(here.counts) and int(counts.to_numpy().sum()) == ds.n_cells
    written = sorted(p.name for p in (tmp_path / "out").glob("*_labelled.fcs"))
    assert written == sorted(f"{s[:-4]}_labelled.fcs" for s in ds.samples)
    assert run.stdout.startswith(f"{ds.n_cells:,} cells of 6 samples labelled in ")
    missing = subprocess.run([sys.executable, "-m", "cytoauto_core", "label-study", "--workspace", str(folder / "ws"),
                              "--dataset", "0" * 32, "--model", str(bundle_dir), "--out", str(tmp_path / "o2")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert missing.returncode == 1 and "holds no dataset" in missing.stderr
