"""FlowJo gates applied to a dataset already loaded in the app, against the dev suite README's counts."""
from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_files
from cytoauto_core.io.flowjo import workspace_labels
from cytoauto_core.io.flowjo_dataset import dataset_gate_labels, dataset_gates, gate_names

BAL = SHARED / "devsuite" / "flowsom_mouse_bal_wsp"
COVID = SHARED / "devsuite" / "covid19_flow_wsp"
LEAVES = ["NK cells", "NK T cells", "B cells", "CD4 T cells", "CD8 T cells", "DN T cells", "DP T cells", "gd T cells"]


def test_loaded_file_gates_like_the_original_file_cell_for_cell():
    dataset = read_files([BAL / "68983.fcs"])
    listed = dataset_gates(BAL / "gating.wsp", dataset)
    assert len(listed.gates) == 15 and listed.gates[0] == "Lymphocytes"
    assert [g.rsplit("/", 1)[-1] for g in listed.leaves] == LEAVES
    names = gate_names(dataset_gate_labels(BAL / "gating.wsp", dataset))
    readme = pd.read_csv(BAL / "68983.labels.csv.gz")["label"].replace("ungated", "").to_numpy()
    assert (names == readme).all()


def test_two_samples_keep_their_own_rows():
    """Two COVID-19 files in one dataset gate as each original file does (FlowKit reading the files themselves)."""
    files = sorted(pd.read_csv(COVID / "samples.csv").sort_values("events")["fcs_file"].head(2))
    paths = [COVID / "fcs" / f for f in files]
    wsp = next(COVID.glob("*.wsp"))
    dataset = read_files(paths, display_names=files)
    ours = dataset_gate_labels(wsp, dataset)
    originals = workspace_labels(wsp, paths)
    assert ours.names == originals.names and len(ours.names) >= 4
    for i, path in enumerate(paths):
        alone = workspace_labels(wsp, [path])
        assert np.array_equal(ours.labels[dataset.sample_ids == i], alone.labels), path.name


def test_files_the_workspace_does_not_describe_are_one_sentence():
    dataset = read_files([BAL / "68983.fcs", BAL / "68983.fcs"], display_names=["68983.fcs", "other.fcs"])
    with pytest.raises(CytoInputError, match=r"^'other.fcs' is not a sample of the FlowJo workspace 'gating.wsp'"):
        dataset_gates(BAL / "gating.wsp", dataset)
    single = read_files([BAL / "68983.fcs"])
    with pytest.raises(CytoInputError, match=r"^'68983.fcs' is not a sample of the FlowJo workspace"):
        dataset_gates(next(COVID.glob("*.wsp")), single)


@pytest.mark.parametrize("sample, shown", [("../../../escape.fcs", "escape.fcs"), ("..", "sample 1.fcs"),
                                           ("x" * 300 + ".fcs", "sample 1.fcs")])
def test_a_sample_name_never_becomes_a_path_outside_the_temporary_folder(tmp_path, monkeypatch, sample, shown):
    """Sample names come from uploads: only their last part names a temporary file, and one no file can have
    becomes a plain name, so the workspace's refusal is the one sentence."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "deep" / "er"))
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", None)
    dataset = read_files([BAL / "68983.fcs"], display_names=[sample])
    with pytest.raises(CytoInputError, match=rf"^'{shown}' is not a sample of the FlowJo workspace 'gating.wsp'"):
        dataset_gates(BAL / "gating.wsp", dataset)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "er"], "nothing written beside the temp folder"
