"""`python -m cytoauto_core train` then `apply` from the shell: the Train page's prediction for the same labels and seed."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import LEVINE, ROOT
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file, read_files, write_fcs
from cytoauto_core.io.export import write_labelled_h5ad
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.run.train_command import keep_per_population, label_columns, labels_from_column, labels_from_csv
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models import bundle as bundle_module
from cytoauto_core.tools.training import TrainingRequest, train_and_apply

SEED = 3
LABELS_PER_POPULATION = 8
MATCHED = LEVINE / "Levine_32dim_10k_matched_labels.csv"  # row_in_fcs_0based, label, population


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cytoauto_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two samples of one study, one FCS and one .h5ad, and a labels CSV naming cells by (sample, row in its file).

    An FCS file's sample is its file name; an .h5ad keeps the sample names of its obs['sample'].
    """
    root = tmp_path_factory.mktemp("train")
    first, second = make_demo(2_500, seed=1), make_demo(2_000, seed=2)
    second.samples = ["donor 2"]
    write_fcs(root / "first.fcs", first)
    write_labelled_h5ad(root / "second.h5ad", second, default_spec(second), None)
    rng = np.random.default_rng(0)
    rows = []
    for sample, ds in (("first.fcs", first), ("donor 2", second)):
        truth = ds.annotations["population"].astype(str).to_numpy()
        for name in sorted(set(truth) - {"unassigned"}):
            cells = np.flatnonzero(truth == name)
            picked = rng.choice(cells, min(LABELS_PER_POPULATION // 2, len(cells)), replace=False)
            rows += [(sample, int(i), name) for i in picked]
    pd.DataFrame(rows, columns=["sample", "cell_index", "population"]).to_csv(root / "labels.csv", index=False)
    return root, [root / "first.fcs", root / "second.h5ad"]


def test_train_then_apply_from_the_shell_reproduce_the_train_page(study, tmp_path):
    root, files = study
    trained = _cli("train", "--labels", str(root / "labels.csv"), "--compare", "lda,logreg", "--apply", "lda",
                   "--seed", str(SEED), "--out", str(tmp_path / "bundle"), *map(str, files))
    assert trained.returncode == 0, trained.stderr
    table = trained.stdout
    assert "LDA (applied)" in table and "Logistic regression" in table and "Macro-F1" in table and "Log loss" in table
    assert f"bundle: {tmp_path / 'bundle'}" in table

    applied = _cli("apply", "--model", str(tmp_path / "bundle"), "--out", str(tmp_path / "out"), "--workers", "1",
                   *map(str, files))
    assert applied.returncode == 0, applied.stderr

    # The Train page's path in-process: the same files, labels, transform, request and seed.
    dataset = read_files(files)
    labels = labels_from_csv(root / "labels.csv", dataset)
    spec = default_spec(dataset)
    request = TrainingRequest(compare=["LDA", "Logistic regression"], apply="LDA", seed=SEED, threshold=0.5)
    outcome = train_and_apply(dataset, transform_features(dataset, spec), spec, labels.labels, labels.names, request,
                              tmp_path / "models", lambda f, m: None, lambda: False)
    assert outcome.n_labelled == int((labels.labels >= 0).sum())
    for sample_id, stem in enumerate(("first", "second")):
        exported = pd.read_csv(tmp_path / "out" / f"{stem}_labelled.csv")
        expected = outcome.prediction.labels[dataset.sample_ids == sample_id]
        np.testing.assert_array_equal(exported["population_id"].to_numpy(), expected)
    saved = bundle_module.load_bundle(str(tmp_path / "bundle"))
    assert saved.seed == SEED and saved.class_names == [labels.names[i] for i in saved.class_ids]


def test_sample_relative_labels_land_on_the_right_cells(study):
    root, files = study
    dataset = read_files(files)
    labels = labels_from_csv(root / "labels.csv", dataset)
    truth = dataset.annotations["population"].astype(str).to_numpy()
    labelled = np.flatnonzero(labels.labels >= 0)
    assert len(labelled) == len(pd.read_csv(root / "labels.csv"))
    assert all(labels.names[int(labels.labels[i])] == truth[i] for i in labelled)
    assert (dataset.sample_ids[labelled] == 1).any(), "cells of the second file are found by their own row"


def test_label_column_with_n_per_population_is_seeded(study):
    _, files = study
    dataset = read_file(files[0])
    every = labels_from_column(dataset, "population")
    assert "unassigned" not in every.names.values()
    picked = keep_per_population(every, 5, seed=1)
    assert all(n == min(5, every.counts()[name]) for name, n in picked.counts().items())
    np.testing.assert_array_equal(picked.labels, keep_per_population(every, 5, seed=1).labels)
    assert not np.array_equal(picked.labels, keep_per_population(every, 5, seed=2).labels)
    with pytest.raises(CytoInputError, match=r"has no annotation column 'gate'"):
        labels_from_column(dataset, "gate")


def test_help_and_exit_codes(study, tmp_path):
    root, files = study
    for command in ("train", "apply"):
        shown = _cli(command, "--help")
        assert shown.returncode == 0 and "exit status: 0" in shown.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("cell_index,population\n999999,T cells\n")
    refused = _cli("train", "--labels", str(bad), "--out", str(tmp_path / "b1"), str(files[0]))
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("error: The labels file 'bad.csv' names cell 999999, but the files hold cells 0 "
                                      "to 2499.")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    assert _cli("train", "--label-column", "population", "--out", str(taken), str(files[0])).returncode == 2
    unknown = _cli("train", "--label-column", "population", "--apply", "forest", "--out", str(tmp_path / "b2"),
                   str(files[0]))
    assert unknown.returncode == 2 and "Unknown model 'forest'" in unknown.stderr
    assert _cli("train", "--out", str(tmp_path / "b3"), str(files[0])).returncode == 2, "labels are required"
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


def test_label_columns_are_guessed_as_the_app_guesses_them():
    assert label_columns(["cell_index", "population"]) == ("cell_index", "population", 0)
    assert label_columns(["row_in_fcs_0based", "label", "population"]) == ("row_in_fcs_0based", "population", 0)
    assert label_columns(["Event_1based", "Cell Type", "sample"]) == ("Event_1based", "Cell Type", 1)
    assert label_columns(["FSC-A", "gate_name"]) == ("FSC-A", "gate_name", 0), "no index-like name: the first column"


def test_train_reads_a_gating_csv_by_its_own_column_names(tmp_path):
    """Levine_32dim's matched gating labels (cell index in `row_in_fcs_0based`) train from the shell as they import
    on the Label page; a 1-based copy labels the same cells."""
    fcs = LEVINE / "Levine_32dim_10k.fcs"
    trained = _cli("train", "--labels", str(MATCHED), "--compare", "", "--apply", "lda", "--out",
                   str(tmp_path / "bundle"), str(fcs))
    assert trained.returncode == 0, trained.stderr
    assert ("labels: cell index from column 'row_in_fcs_0based' (0-based), population from 'population'"
            in trained.stdout)
    assert "LDA (applied)" in trained.stdout and "Macro-F1" in trained.stdout

    dataset = read_file(fcs)
    table = pd.read_csv(MATCHED)
    labels = labels_from_csv(MATCHED, dataset)
    named = np.array([labels.names[int(i)] for i in labels.labels[table["row_in_fcs_0based"]]])
    assert (named == table["population"].to_numpy()).all() and (labels.labels >= 0).sum() == len(table)
    table.assign(event_1based=table["row_in_fcs_0based"] + 1).drop(columns="row_in_fcs_0based").to_csv(
        tmp_path / "one_based.csv", index=False)
    np.testing.assert_array_equal(labels_from_csv(tmp_path / "one_based.csv", dataset).labels, labels.labels)
