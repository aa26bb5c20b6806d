"""Sample metadata: a real three-file study gets its table from a CSV or an edit, validated and kept on disk."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cytoauto_core import samples
from cytoauto_core.errors import CytoInputError
from cytoauto_core.io import read_files
from cytoauto_core.workspace import Workspace
from tests.conftest import SHARED

COVID = SHARED / "devsuite" / "covid19_flow_wsp"


@pytest.fixture(scope="module")
def study():
    """The three smallest real COVID-19 files as one dataset (one sample per file) and their published rows."""
    published = pd.read_csv(COVID / "samples.csv").sort_values("events").head(3)
    return read_files([COVID / "fcs" / name for name in published["fcs_file"]]), published


def _csv(frame: pd.DataFrame, sep: str = ",") -> bytes:
    return frame.to_csv(index=False, sep=sep).encode()


def test_uploaded_csv_names_samples_by_file_or_stem_in_any_order(study):
    dataset, published = study
    table = pd.DataFrame({"sample": [Path(n).stem for n in published["fcs_file"]][::-1],
                          "condition": published["group_in_wsp_name"].tolist()[::-1],
                          "patient": ["", " 024 ", "005"], "day": published["batch_in_filename"].tolist()[::-1]})
    for sep in (",", ";", "\t"):
        result = samples.read_table(_csv(table, sep), "study.csv", dataset.samples)
        assert result["sample"].tolist() == dataset.samples
        assert result["condition"].tolist() == published["group_in_wsp_name"].tolist()
        assert result["patient"].tolist() == ["005", "024", None]  # text kept as written, blanks are missing
        assert list(result.columns) == ["sample", "condition", "patient", "day"]
    assert samples.values(result, "condition") == ["W", "ICU"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.iloc[:2], "'study.csv' has no row for sample 'export_COVID19 samples 21_04_20_ST3_COVID19_ICU_005_A "
                           "ST3 210420_080_Live_cells.fcs'; every sample of the dataset needs one."),
    (lambda t: pd.concat([t, t.iloc[:1]]), "'study.csv' lists sample 'export_COVID19 samples 23_04_20_ST3_COVID19_"
                                           "W_024_O ST3 230420_005_Live_cells.fcs' more than once; give each sample "
                                           "one row."),
    (lambda t: t.assign(sample=["a.fcs", *t["sample"][1:]]), "'study.csv' names sample 'a.fcs', which is not in this "
                                                             "dataset."),
    (lambda t: t.rename(columns={"sample": "file"}), "'study.csv' needs a column named 'sample' holding the sample "
                                                     "(file) names."),
    (lambda t: t.rename(columns={"batch": "condition"}), "'study.csv' has an empty or repeated column name; give every "
                                                         "column its own name."),
])
def test_a_table_that_does_not_fit_the_dataset_is_one_sentence_naming_the_file(study, edit, message):
    dataset, _ = study
    table = edit(samples.template(dataset.samples).fillna("x"))
    with pytest.raises(CytoInputError) as error:
        samples.read_table(_csv(table), "study.csv", dataset.samples)
    assert str(error.value) == message


def test_unreadable_uploads_are_one_sentence(study):
    dataset, _ = study
    with pytest.raises(CytoInputError, match="^'empty.csv' is empty.$"):
        samples.read_table(b"  \n", "empty.csv", dataset.samples)
    with pytest.raises(CytoInputError, match="^'latin.csv' is not a UTF-8 text file.$"):
        samples.read_table("sample\nprobe_\xe9".encode("latin-1"), "latin.csv", dataset.samples)


def test_table_edited_in_the_page_is_saved_atomically_and_reloaded(study, workspace_dir):
    dataset, published = study
    workspace = Workspace(workspace_dir)
    key = workspace.add_dataset(dataset)
    assert samples.load(workspace, key, dataset.samples) is None
    edited = samples.template(dataset.samples)
    edited["condition"] = published["group_in_wsp_name"].to_numpy()
    edited["batch"] = published["batch_in_filename"].to_numpy()
    samples.save(workspace, key, samples.validate(edited, dataset.samples))
    assert [p.name for p in workspace.dataset_dir(key).glob(".*.tmp")] == []
    reloaded = samples.load(workspace, key, dataset.samples)
    pd.testing.assert_frame_equal(reloaded, samples.validate(edited, dataset.samples))
    assert reloaded["patient"].isna().all()
    refilled = samples.template(dataset.samples, reloaded)
    assert refilled["batch"].tolist() == published["batch_in_filename"].tolist()
    with pytest.raises(CytoInputError, match="^The stored sample table has no row for sample 'other.fcs'"):
        samples.load(workspace, key, [*dataset.samples, "other.fcs"])


def test_a_table_too_large_or_too_wide_for_a_sample_table_is_refused_before_it_is_parsed(study):
    """A table of 2 million columns (21 MB with one row) took over 9 GB as a table of strings; such tables are
    refused before they are parsed."""
    dataset, _ = study
    wide = (",".join(f"c{i}" for i in range(2_000_000)) + "\n").encode()
    with pytest.raises(CytoInputError, match=r"^'wide.csv' holds 16 MB; a sample table \(one row per sample\) of at "
                                             r"most 10 MB can be read\.$"):
        samples.read_table(wide, "wide.csv", dataset.samples)
    with pytest.raises(CytoInputError, match=r"^'wide.csv' has a header row longer than 64 KB, so it was not read\.$"):
        samples.read_table(wide[:5 << 20], "wide.csv", dataset.samples)
    with pytest.raises(CytoInputError, match=r"^'wide.csv' has 201 columns; at most 200 can be read\.$"):
        samples.read_table(("sample" + ",x" * 200 + "\n").encode(), "wide.csv", dataset.samples)
    long = "s" * 5000
    with pytest.raises(CytoInputError, match=rf"^'long.csv' names sample '{'s' * 60}…', which is not in this"):
        samples.read_table(f"sample\n{long}\n".encode(), "long.csv", dataset.samples)
