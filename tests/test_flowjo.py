"""FlowJo workspaces → labels with FlowKit, against the dev suite READMEs, then train on one sample and label another."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED
from cytoauto_core.errors import CytoInputError
from cytoauto_core.io.flowjo import workspace_labels

BAL = SHARED / "devsuite" / "flowsom_mouse_bal_wsp"
COVID = SHARED / "devsuite" / "covid19_flow_wsp"
# flowsom_mouse_bal_wsp/README.md, "Counts (`label`, FlowKit)"
BAL_COUNTS = {"CD4 T cells": 7_482, "B cells": 2_460, "gd T cells": 1_470, "CD8 T cells": 1_407, "NK T cells": 535,
              "NK cells": 312, "DN T cells": 267, "DP T cells": 6}
BAL_UNGATED = 5_286


def _covid_fcs(fragment: str):
    [path] = [p for p in (COVID / "fcs").glob("*.fcs") if fragment in p.name]
    return path


def test_mouse_bal_leaf_gates_give_the_readme_counts_cell_for_cell():
    gated = workspace_labels(BAL / "gating.wsp", [BAL / "68983.fcs"])
    assert gated.counts() == BAL_COUNTS
    assert int((gated.labels < 0).sum()) == BAL_UNGATED and gated.overlaps == 0
    assert gated.gates[0] == "Lymphocytes/Singlets/Singlets2/NK1_1+/NK cells"
    readme_labels = pd.read_csv(BAL / "68983.labels.csv.gz")["label"].to_numpy()
    ours = np.array([gated.names.get(int(i), "ungated") for i in gated.labels])
    assert (ours == readme_labels).all()


def test_chosen_gates_and_what_the_workspace_does_not_describe():
    parents = workspace_labels(BAL / "gating.wsp", [BAL / "68983.fcs"],
                               ["Lymphocytes/Singlets/Singlets2/NK1_1+", "Lymphocytes/Singlets/Singlets2/NK1_1-"])
    assert parents.counts() == {"NK1_1+": 923, "NK1_1-": 17_470}
    with pytest.raises(CytoInputError, match=r"^The FlowJo workspace 'gating.wsp' has no gate 'T cells' \(its gates"):
        workspace_labels(BAL / "gating.wsp", [BAL / "68983.fcs"], ["T cells"])
    wsp = next(COVID.glob("*.wsp"))
    with pytest.raises(CytoInputError, match=r"^'68983.fcs' is not a sample of the FlowJo workspace '.*\.wsp' "
                                             r"\(it describes .*\)\.$"):
        workspace_labels(wsp, [BAL / "68983.fcs"])


def test_train_on_one_covid_sample_and_label_another_day_from_the_shell(tmp_path):
    """Gates of ICU_013_A (21 April) → 50 cells per population → LDA → applied to ICU_002_A (24 April)."""
    wsp = next(COVID.glob("*.wsp"))
    train_file, other = _covid_fcs("ICU_013_A"), _covid_fcs("ICU_002_A")
    run = [sys.executable, "-m", "cytoauto_core"]
    trained = subprocess.run([*run, "train", "--wsp", str(wsp), "--per-population", "50", "--compare", "lda",
                              "--apply", "lda", "--out", str(tmp_path / "bundle"), str(train_file)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "50 CD4, 50 CD8, 50 CD14 monocytes, 50 CD19" in trained.stdout
    predicted = {}
    for unknown in ("0", None):  # every cell called; then cells unlike every gate unknown, at the bundle's level
        out = tmp_path / f"out-{unknown}"
        applied = subprocess.run([*run, "apply", "--model", str(tmp_path / "bundle"), "--out", str(out), "--workers",
                                  "1", "--threshold", "0", *(["--unknown", unknown] if unknown else []), str(other)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert applied.returncode == 0, applied.stderr
        predicted[unknown] = pd.read_csv(out / f"{other.stem}_labelled.csv")["population"].to_numpy()
    truth = pd.read_csv(COVID / "labels" / f"{other.stem}.labels.csv.gz")["label"].str.replace("CD3+/", "").to_numpy()
    gated = ~np.isin(truth, ["ungated", "ambiguous"])
    assert gated.sum() == 1_066 + 158 + 237 + 186  # README: ICU_002_A's CD4, CD8, CD14 monocytes, CD19
    assert (predicted["0"][gated] == truth[gated]).mean() > 0.97
    unknown = predicted[None] == "unknown"
    # measured: 6.9 % of gated cells (another day) against 33.5 % of ungated ones; 99.7 % of the rest right
    assert unknown[truth == "ungated"].mean() > 3 * unknown[gated].mean()
    assert (predicted[None][gated & ~unknown] == truth[gated & ~unknown]).mean() > 0.99
