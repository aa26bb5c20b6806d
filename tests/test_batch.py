"""Batch apply: a saved bundle labels many files on a 2-worker Dask cluster exactly as the app labels each one."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import flowio
import numpy as np
import pandas as pd
import pytest

from conftest import CORPUS, ROOT
from cytoauto_core.base.dataset import UNKNOWN_ID
from cytoauto_core.base.labelled import names_of
from cytoauto_core.io import read_file, write_fcs
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.run.batch import _task_failure, apply_to_files
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models.bundle import ModelBundle, load_bundle, predict_dataset, save_bundle
from cytoauto_core.tools.models.novelty import fit_novelty
from cytoauto_core.tools.training import build_model

TRAIN_SEED = 0  # demo cells the LDA is trained on; LDA seed 0
FILE_SEEDS = {"a/demo.fcs": (1, 8_000), "b/demo.fcs": (2, 6_000), "c.fcs": (3, 6_000)}  # path: (demo seed, cells)
THRESHOLD = 0.5
CHUNK = 2_500  # several chunk tasks per file


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An LDA bundle (with unknown detection) trained on demo labels, three demo FCS files (two share a stem), a
    foreign and a garbage file."""
    root = tmp_path_factory.mktemp("batch")
    train = make_demo(4_000, TRAIN_SEED)
    spec = default_spec(train)
    x = transform_features(train, spec)
    names = sorted(set(train.annotations["population"]) - {"unassigned"})
    y = train.annotations["population"].map({n: i for i, n in enumerate(names)}).fillna(-1).to_numpy(int)
    model = build_model("LDA", seed=0).fit(x[y >= 0], y[y >= 0], x[y < 0])
    ids = [int(c) for c in model.classes_]
    novelty = fit_novelty(x[y >= 0], y[y >= 0], rejection=0.05, seed=0)
    save_bundle(ModelBundle(model, spec, ids, [names[i] for i in ids], name="LDA demo", novelty=novelty),
                str(root / "bundle"))
    demo_paths = []
    for rel, (seed, n) in FILE_SEEDS.items():
        path = root / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_fcs(path, make_demo(n, seed))
        demo_paths.append(path)
    garbage = root / "in" / "garbage.fcs"
    garbage.write_bytes(np.random.default_rng(0).bytes(4_000))
    return root, demo_paths, [CORPUS / "flowkit_2d_01.fcs", garbage]


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def run(inputs, cluster):
    root, demo_paths, bad = inputs
    report = apply_to_files(root / "bundle", [str(root / "in" / "**" / "*.fcs"), bad[0]], root / "out",
                            formats=("csv", "fcs"), threshold=THRESHOLD, scheduler=cluster.scheduler_address,
                            chunk_cells=CHUNK, progress=False)
    return root, demo_paths, bad, report


def _app_labels(root, path):
    """What the app computes for the same file and bundle: predict_dataset in-process."""
    bundle = load_bundle(str(root / "bundle"))
    ds = read_file(path)
    p = predict_dataset(bundle, ds.events, ds.channel_names, ds.spillover, THRESHOLD)
    return p.labels, p.confidence, dict(zip(p.class_ids, p.class_names)), p.novelty


def test_statuses_and_unique_outputs(run):
    root, demo_paths, bad, report = run
    status = {r.input: r.status for r in report.files}
    assert [status[str(p)] for p in demo_paths] == ["ok"] * 3
    assert status[str(bad[0])] == status[str(bad[1])] == "failed"
    errors = {r.input: r.error for r in report.failed}
    assert "lacks channel" in errors[str(bad[0])]
    assert "garbage.fcs" in errors[str(bad[1])] and errors[str(bad[1])].endswith(".")
    assert report.exit_code == 1 and report.cells == sum(n for _, n in FILE_SEEDS.values())
    assert sorted(p.name for p in (root / "out").iterdir()) == [
        "abundance.csv", "c_labelled.csv", "c_labelled.fcs", "c_legend.csv", "demo_2_labelled.csv",
        "demo_2_labelled.fcs", "demo_2_legend.csv", "demo_labelled.csv", "demo_labelled.fcs", "demo_legend.csv"]


def test_outputs_equal_the_apps_prediction(run):
    root, demo_paths, _, report = run
    for row in (r for r in report.files if r.status == "ok"):
        labels, confidence, names, novelty = _app_labels(root, row.input)
        assert (labels == UNKNOWN_ID).any()
        csv_path, fcs_path, legend_path = row.outputs
        legend = pd.read_csv(legend_path)
        assert dict(zip(legend["population_id"], legend["population"])) == {**names, -1: "unassigned", -2: "unknown"}
        assert legend["cells"].tolist() == [int((labels == i).sum()) for i in legend["population_id"]]
        table = read_file(csv_path)
        np.testing.assert_array_equal(table.events[:, table.channel_names.index("population_id")], labels)
        np.testing.assert_allclose(table.events[:, table.channel_names.index("confidence")], confidence, rtol=1e-5)
        np.testing.assert_allclose(table.events[:, table.channel_names.index("novelty")], novelty, rtol=1e-5)
        assert (table.annotations["population"].to_numpy() == names_of(labels, names)).all()
        source = read_file(row.input)
        assert (table.annotations["annotation_population"].to_numpy() == source.annotations["population"].astype(str)).all()
        fcs = flowio.FlowData(fcs_path)
        channels = [fcs.channels[k]["pnn"] for k in sorted(fcs.channels, key=int)]
        events = np.reshape(fcs.events, (-1, fcs.channel_count))
        np.testing.assert_array_equal(events[:, channels.index("population_id")], labels)
        assert {int(k): v for k, v in json.loads(fcs.text["cytoauto_populations"]).items()} == {**names, -2: "unknown"}
        np.testing.assert_array_equal(events[:, : source.events.shape[1]], source.events)


def test_labelled_fcs_rereads_every_population_name(run):
    root, _, _, report = run
    row = next(r for r in report.files if r.status == "ok")
    labels, _, names, _ = _app_labels(root, row.input)
    reread = read_file(row.outputs[1])
    assert (reread.annotations["population"].astype(str).to_numpy() == names_of(labels, names)).all()


def test_abundance_table(run):
    root, _, _, report = run
    table = pd.read_csv(report.abundance_path)
    per_file = table.groupby("file")
    assert per_file["cells"].sum().to_dict() == {r.input: r.cells for r in report.files if r.status == "ok"}
    np.testing.assert_allclose(per_file["percent"].sum(), 100, atol=0.01)


def test_workers_load_the_bundle_once_and_never_tensorflow(run, cluster):
    from distributed import Client

    def loaded() -> tuple[bool, int]:
        import importlib
        import sys

        bundle = importlib.import_module("cytoauto_core.tools.models.bundle")
        return "tensorflow" in sys.modules, bundle.worker_bundle.cache_info().misses

    with Client(cluster) as client:
        state = client.run(loaded)
    assert all(not tf and misses <= 1 for tf, misses in state.values()), state


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cytoauto_core", "apply", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_exit_codes(inputs, tmp_path):
    root, demo_paths, bad = inputs
    done = _cli("--model", str(root / "bundle"), "--out", str(tmp_path), "--workers", "1", "--format", "fcs",
                str(demo_paths[2]), str(bad[1]))
    assert done.returncode == 1, done.stderr
    assert "1 of 2 files failed." in done.stderr and (tmp_path / "c_labelled.fcs").exists()
    assert _cli("--model", str(tmp_path / "nope"), "--out", str(tmp_path), str(demo_paths[0])).returncode == 2
    missing = _cli("--model", str(root / "bundle"), "--out", str(tmp_path), str(tmp_path / "*.nothing"))
    assert missing.returncode == 2 and "No input file matches" in missing.stderr
    refused = _cli("--model", str(root / "bundle"), "--out", str(tmp_path), "--unknown", "2", str(demo_paths[0]))
    assert refused.returncode == 2 and "--unknown must be" in refused.stderr


def test_cli_unknown_level_overrides_the_bundles(inputs, tmp_path):
    root, demo_paths, _ = inputs
    done = _cli("--model", str(root / "bundle"), "--out", str(tmp_path), "--workers", "1", "--unknown", "0",
                str(demo_paths[2]))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "c_labelled.csv")
    labels, _, _, novelty = _app_labels(root, demo_paths[2])
    assert (labels == UNKNOWN_ID).any() and not (table["population_id"] == UNKNOWN_ID).any()
    np.testing.assert_allclose(table["novelty"], novelty, rtol=1e-5)


def test_a_cancelled_or_failed_task_becomes_one_sentence(cluster):
    from distributed import Client, wait

    with Client(cluster) as client:
        slow = client.submit(time.sleep, 30, pure=False)
        slow.cancel()
        broken = client.submit(read_file, ROOT / "no-such-file.fcs", pure=False)
        wait([broken])
        assert slow.status == "cancelled" and broken.status == "error"
        assert _task_failure(slow, "x.fcs") == "'x.fcs' was not processed: its task was cancelled on the cluster."
        sentence = _task_failure(broken, "no-such-file.fcs")
        assert "no-such-file.fcs" in sentence and sentence.endswith(".") and "\n" not in sentence


def test_cli_h5ad_export_opens_in_anndata_with_the_apps_labels(inputs, tmp_path):
    import anndata

    root, demo_paths, _ = inputs
    done = _cli("--model", str(root / "bundle"), "--out", str(tmp_path), "--workers", "1", "--format", "h5ad",
                str(demo_paths[2]))
    assert done.returncode == 0, done.stderr
    labels, confidence, names, novelty = _app_labels(root, demo_paths[2])
    adata = anndata.read_h5ad(tmp_path / "c_labelled.h5ad")
    bundle = load_bundle(str(root / "bundle"))
    source = read_file(demo_paths[2])
    np.testing.assert_array_equal(adata.obs["population_id"], labels)
    assert (adata.obs["population"].astype(str).to_numpy() == names_of(labels, names)).all()
    np.testing.assert_allclose(adata.obs["confidence"], confidence, rtol=1e-6)
    np.testing.assert_allclose(adata.obs["novelty"], novelty, rtol=1e-6)
    np.testing.assert_array_equal(adata.X, transform_features(source, bundle.spec))
    assert adata.var["channel"].tolist() == bundle.spec.features
    provenance = adata.uns["cytoauto"]
    assert provenance["bundle_hash"] == json.loads((root / "bundle" / "bundle.json").read_text())["bundle_hash"]
    assert provenance["threshold"] == THRESHOLD and provenance["model"] == "lda" and provenance["rejection"] == 0.05
