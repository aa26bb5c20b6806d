"""FlowJo workspaces → labels with FlowKit, against the dev suite READMEs, then train on one sample and label another."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED
from cytoauto_core.base.errors import CytoInputError
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


# ---- hostile workspaces: long names, entity expansion, external entities and files named by the workspace ----------
WORKER = """
import resource, sys, time
from pathlib import Path
import flowkit  # loaded before the measurement starts
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io.flowjo import workspace_labels
fcs = [Path(p) for p in sys.argv[2:]]
for wsp in sys.argv[1].split(","):
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    try:
        print("labelled", sorted(workspace_labels(Path(wsp), fcs).counts().items()))
    except CytoInputError as exc:
        print("refused", exc)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"took {time.perf_counter() - start:.2f} s, grew {grown:.0f} MB")
"""
LAUGHS = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))


def _bal_wsp(folder, name: str = "gating.wsp", doctype: str = "", **replace: str):
    """The dev suite's mouse BAL workspace with a DOCTYPE after its XML declaration and texts replaced."""
    text = (BAL / "gating.wsp").read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    first, rest = text.split("\n", 1)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{first}\n{doctype}\n{rest}" if doctype else text)
    return path


def _in_fresh_python(wsps, fcs, timeout: float = 180) -> list[str]:
    """WORKER's lines for each workspace, in a new process limited to 3 GB of address space; a read that blocks
    (opening a FIFO) or allocates without bound fails the test instead of stalling it."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    done = subprocess.run([sys.executable, "-c", WORKER, ",".join(map(str, wsps)), *map(str, fcs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_a_gate_name_of_5000_characters_is_quoted_short(tmp_path):
    long = "N" * 5000
    wsp = _bal_wsp(tmp_path, **{'name="NK cells"': f'name="{long}"'})
    with pytest.raises(CytoInputError) as refused:
        workspace_labels(wsp, [BAL / "68983.fcs"])
    message = str(refused.value)
    assert message.startswith("'gating.wsp' has a gate named 'NNNN") and f"'{'N' * 60}…' of 5,000 characters" in message
    assert len(message) < 200 and "\n" not in message
    with pytest.raises(CytoInputError) as unknown:
        workspace_labels(BAL / "gating.wsp", [BAL / "68983.fcs"], ["Q" * 5000 + "\n\x00"])
    message = str(unknown.value)
    assert f"has no gate '{'Q' * 60}…' (its gates: 'Lymphocytes', " in message and message.endswith(" …).")
    assert len(message) < 400 and "\n" not in message and "\x00" not in message


def test_a_workspace_beyond_the_gate_or_element_limits_is_refused(tmp_path, monkeypatch):
    from cytoauto_core.io import flowjo

    monkeypatch.setattr(flowjo, "MAX_GATES", 14)
    with pytest.raises(CytoInputError, match=r"^'gating.wsp' gives one sample 15 gates; at most 14 gates per sample"):
        workspace_labels(BAL / "gating.wsp", [BAL / "68983.fcs"])
    monkeypatch.setattr(flowjo, "MAX_ELEMENTS", 1_000)
    with pytest.raises(CytoInputError, match=r"^'gating.wsp' holds more than 1,000 XML elements"):
        workspace_labels(BAL / "gating.wsp", [BAL / "68983.fcs"])


def test_entity_expansion_and_external_entities_are_refused_fast_without_reading_anything(tmp_path):
    """A billion laughs (3 GB once expanded) and external entities (general and parameter) that name a FIFO: opening
    the FIFO would block, expanding would allocate past the limit; the workspace is refused instead."""
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    laughs = _bal_wsp(tmp_path / "laughs", doctype=f'<!DOCTYPE Workspace [<!ENTITY lol0 "lol">{LAUGHS}]>',
                      **{'name="NK cells"': 'name="&lol9;"'})
    external = _bal_wsp(tmp_path / "xxe", doctype=f'<!DOCTYPE Workspace [<!ENTITY xxe SYSTEM "file://{fifo}">'
                                                  f'<!ENTITY % remote SYSTEM "file://{fifo}"> %remote;]>',
                        **{"</Workspace>": "<Note>&xxe;</Note></Workspace>"})
    system = _bal_wsp(tmp_path / "dtd", doctype=f'<!DOCTYPE Workspace SYSTEM "file://{fifo}">')
    lines = _in_fresh_python([laughs, external, system], [BAL / "68983.fcs"])
    refusals, costs = lines[0::2], lines[1::2]
    assert refusals[0].startswith("refused 'gating.wsp' is not a readable FlowJo workspace (")
    assert all(r == "refused 'gating.wsp' declares a DTD (<!DOCTYPE …>), which FlowJo workspaces never do and which "
                    "could make a reader expand entities or open other files; it was not read." for r in refusals[1:])
    for cost in costs:
        seconds, grown = (float(cost.split()[i]) for i in (1, 4))
        assert seconds < 5 and grown < 100, cost


def test_files_a_workspace_names_are_never_opened(tmp_path):
    """FlowKit gets the given FCS files only: a workspace whose sample names '../../secret.fcs' or an absolute file
    URI (both FIFOs here, so opening them would block) gates the given file as the untouched workspace does."""
    (tmp_path / "secret.fcs").parent.mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "secret.fcs")
    os.mkfifo(tmp_path / "absolute.fcs")
    uri = 'uri="file:/D:/FlowSOM/inst/extdata/lymphocytes.fcs"'
    relative = _bal_wsp(tmp_path / "a" / "b", **{uri: 'uri="../../secret.fcs"'})
    absolute = _bal_wsp(tmp_path / "c", **{uri: f'uri="file://{tmp_path / "absolute.fcs"}"'})
    passwd = _bal_wsp(tmp_path / "d", **{uri: 'uri="file:///etc/passwd"'})
    lines = _in_fresh_python([relative, absolute, passwd], [BAL / "68983.fcs"])
    assert lines[0::2] == [f"labelled {sorted(BAL_COUNTS.items())}"] * 3
