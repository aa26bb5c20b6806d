"""Server-side import of a study: the same dataset as a multi-file upload, one file in memory, paths kept under the
data root, a sentence for each file left out."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import CORPUS, ROOT
from cytoauto_core.base.contracts import JobCancelled
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_files, write_fcs
from cytoauto_core.store.workspace import STALE_S, Workspace
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.study.ingest import DATA_ENV_VAR, data_root, ingest, list_files
from cytoauto_core.study.samples import load_keywords


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Four demo FCS files of a two-condition study (with ground-truth populations), written by our FCS writer."""
    folder = tmp_path_factory.mktemp("study")
    paths = []
    for sample in make_demo_study(4, 3_000):
        path = folder / sample.name
        write_fcs(path, sample.dataset)
        paths.append(path)
    return folder, paths


def test_ingest_stores_what_a_multi_file_upload_stores(study, tmp_path):
    folder, paths = study
    workspace = Workspace(tmp_path / "ws")
    messages = []
    report = ingest([str(folder / "*.fcs")], workspace, progress=lambda f, m: messages.append((f, m)))
    upload = read_files(paths)
    assert report.key == upload.content_hash() == workspace.add_dataset(upload)  # the same content, the same key
    stored = workspace.load_dataset(report.key)
    np.testing.assert_array_equal(stored.events, upload.events)
    np.testing.assert_array_equal(stored.sample_ids, upload.sample_ids)
    assert stored.samples == upload.samples == [p.name for p in sorted(paths)]
    assert stored.channel_names == upload.channel_names
    assert list(stored.annotations["population"]) == list(upload.annotations["population"])
    assert [f.status for f in report.files] == ["ok"] * 4 and report.n_cells == upload.n_cells
    assert {s: k["CYTOAUTO_DEMO_CONDITION"] for s, k in load_keywords(workspace, report.key, stored).items()} == {
        "demo_A1.fcs": "A", "demo_A2.fcs": "A", "demo_B3.fcs": "B", "demo_B4.fcs": "B"}
    assert [m for _, m in messages if m.startswith("importing")] == [
        f"importing {p.name} ({k} of 4)" for k, p in enumerate(sorted(paths), start=1)]
    assert messages[-1][0] == 1.0
    assert not any((workspace.root / "ingest").iterdir())


def test_files_that_cannot_join_are_skipped_with_a_reason(study, tmp_path):
    folder, paths = study
    garbage = tmp_path / "garbage.fcs"
    garbage.write_bytes(b"FCS3.0" + bytes(200))
    report = ingest([*map(str, paths[:2]), str(garbage), str(CORPUS / "flowkit_2d_01.fcs")], Workspace(tmp_path / "w"))
    reasons = {os.path.basename(f.path): f.reason for f in report.skipped}
    assert set(reasons) == {"garbage.fcs", "flowkit_2d_01.fcs"}
    assert reasons["flowkit_2d_01.fcs"] == ("'flowkit_2d_01.fcs' shares no channel name with 'demo_A1.fcs', "
                                            "the first file.")
    assert reasons["garbage.fcs"].startswith("'garbage.fcs'") and "\n" not in reasons["garbage.fcs"]
    assert report.n_cells == read_files(paths[:2]).n_cells


def test_channels_are_matched_as_an_upload_matches_them(study, tmp_path):
    folder, paths = study
    narrower = read_files(paths[2:3])
    dropped = narrower.channel_names[3]
    keep = [c for c in narrower.channel_names if c != dropped]
    narrower.events = np.ascontiguousarray(narrower.events[:, narrower.channel_index(keep)])
    narrower.channels = [c for c in narrower.channels if c.name != dropped]
    write_fcs(tmp_path / "narrower.fcs", narrower)
    files = [paths[0], tmp_path / "narrower.fcs"]
    workspace = Workspace(tmp_path / "w")
    report = ingest(list(map(str, files)), workspace)
    upload = read_files(files)
    assert report.key == upload.content_hash()
    assert dropped not in workspace.load_dataset(report.key).channel_names
    assert report.warnings == [f"Only the {len(keep)} channels that all 2 files have were kept; '{dropped}' were "
                               "dropped."]  # the upload names every file instead: a study has a hundred
    assert report.warnings[0] in workspace.load_dataset(report.key).warnings


def test_paths_outside_the_data_root_are_refused(study, tmp_path, monkeypatch):
    folder, paths = study
    root = tmp_path / "data[1]"  # glob characters in the folder's own name match nothing else
    root.mkdir()
    (root / "inside.fcs").symlink_to(paths[0])  # a link out of the root is outside too
    (root / "notes.txt.bak").write_text("x")
    monkeypatch.setenv(DATA_ENV_VAR, str(root))
    assert data_root() == root.resolve()
    for attempt in ("inside.fcs", "../study/demo_A1.fcs", str(paths[0]), "*.fcs"):
        with pytest.raises(CytoInputError, match="outside the data folder"):
            ingest([attempt], Workspace(tmp_path / "w"), root=data_root())
    assert list_files(root.resolve(), "**/*.bak") == []
    assert list_files(root.resolve()) == []  # the link out of the root is left out of the listing
    with pytest.raises(CytoInputError, match="outside the data folder"):
        list_files(root.resolve(), "../*")
    os.remove(root / "inside.fcs")
    (root / "sub").mkdir()
    write_fcs(root / "sub" / "a.fcs", read_files(paths[:1]))
    assert list_files(root.resolve()) == [root.resolve() / "sub" / "a.fcs"]
    report = ingest(["sub/*.fcs"], Workspace(tmp_path / "w"), root=data_root())
    assert [f.status for f in report.files] == ["ok"]


def test_a_cancelled_import_leaves_nothing(study, tmp_path):
    folder, paths = study
    workspace = Workspace(tmp_path / "w")
    calls = []
    with pytest.raises(JobCancelled):
        ingest(list(map(str, paths)), workspace, should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert workspace.list_datasets() == []
    assert not any((workspace.root / "ingest").iterdir())


def test_a_killed_import_is_cleaned_up_when_the_workspace_next_opens(tmp_path):
    left = tmp_path / "w" / "ingest" / "0123abcd"
    left.mkdir(parents=True)
    (left / "events.npy").write_bytes(b"partial")
    old = time.time() - STALE_S - 60
    os.utime(left / "events.npy", (old, old))
    os.utime(left, (old, old))
    Workspace(tmp_path / "w")
    assert not left.exists()


def test_command_line_ingest(study, tmp_path):
    folder, paths = study
    garbage = tmp_path / "bad.csv"
    garbage.write_bytes(b"\xff\xfe\x00 not a table")
    run = subprocess.run([sys.executable, "-m", "cytoauto_core", "ingest", "--workspace", str(tmp_path / "w"),
                          "--name", "my study", str(folder / "*.fcs"), str(garbage)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 1, run.stderr  # one file skipped
    lines = run.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines[:5]] == ["ok"] * 4 + ["skipped"]
    assert lines[4].split("\t")[2].startswith("'bad.csv'")
    records = Workspace(tmp_path / "w").list_datasets()
    assert [(r.name, r.n_cells) for r in records] == [("my study", read_files(paths).n_cells)]
    assert lines[-1].startswith(f"dataset {records[0].key}: ")
    assert "importing demo_A1.fcs (1 of 4)" in run.stderr


FUZZ_SEED = 32
FUZZ_SOURCES = ["flowkit_2d_01.fcs", "flowio_B01 KC-A-W---91-US.fcs", "flowio_data1.fcs", "flowio_G11.fcs",
                "flowkit_test_comp_example.fcs", "flowio_coulter_multidataset.lmd"]


def test_fuzzed_fcs_layouts_are_what_the_reader_reads_or_a_refusal(tmp_path):
    """Seeded byte flips in the HEADER and TEXT of real files: the layout ingest matches channels by is refused in one
    sentence or names exactly the channels and annotation columns read_fcs gives; ingest skips or imports the file."""
    from cytoauto_core.io.fcs_reader import read_fcs, read_fcs_layout

    rng = np.random.default_rng(FUZZ_SEED)
    outcomes = {"refused": 0, "same": 0}
    for source in FUZZ_SOURCES:
        blob = (CORPUS / source).read_bytes()
        text_end = int(blob[18:26]) + 1  # the HEADER's end of the TEXT segment
        for k in range(50):
            mutated = bytearray(blob)
            for position in rng.integers(0, text_end, rng.integers(1, 5)):
                mutated[position] = int(rng.integers(0, 256))
            path = tmp_path / f"{k}_{source}"
            path.write_bytes(bytes(mutated))
            try:
                layout = read_fcs_layout(path)
            except CytoInputError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(f"'{path.name}'"), str(exc)
                outcomes["refused"] += 1
                continue
            try:
                read = read_fcs(path)
            except CytoInputError:
                outcomes["refused"] += 1  # events that do not add up: ingest skips the file with that sentence
                continue
            assert layout == (read.channel_names, [str(c) for c in read.annotations.columns]), source
            outcomes["same"] += 1
    assert outcomes["refused"] > 20 and outcomes["same"] > 100, outcomes
