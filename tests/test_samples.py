"""Sample metadata: a real three-file study gets its table from a CSV or an edit, validated and kept on disk."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_files
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study import samples
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


def test_long_file_names_become_short_distinct_names_for_plots():
    """The 18 COVID-19 files are named like 'export_COVID19 samples 21_04_20_ST3_COVID19_ICU_005_A ST3
    210420_080_Live_cells.fcs'; what all share is dropped and the rest capped."""
    names = pd.read_csv(COVID / "samples.csv")["fcs_file"].tolist()
    short = samples.shorten(names)
    assert short[0] == "21_ICU_005_A 210420_080"
    assert len(set(short)) == len(names) and max(map(len, short)) <= samples.SHORT_NAME
    assert short[3] == "21_ICU_changedW…0420_040", "too long: start and end kept around an ellipsis"
    assert samples.shorten(["only one.fcs"]) == ["only one"]
    assert samples.shorten(["a.fcs", "a_2.fcs"]) == ["a", "a_2"], "a name that would become empty keeps its word"


def test_display_names_are_used_where_given_and_must_differ(study):
    dataset, _ = study
    table = samples.template(dataset.samples)
    assert table.columns[1] == samples.DISPLAY and table[samples.DISPLAY].tolist() == \
        list(samples.short_names(dataset.samples).values()), "the editor starts from the short names"
    table[samples.DISPLAY] = ["patient 24", None, "a very long display name given by the user"]
    shown = samples.short_names(dataset.samples, samples.validate(table, dataset.samples))
    assert list(shown.values()) == ["patient 24", samples.shorten(dataset.samples)[1], "a very long dis…the user"]
    table[samples.DISPLAY] = ["same", "same", None]
    with pytest.raises(CytoInputError, match="^the sample table gives the display name 'same' to more than one "
                                             "sample; give each sample its own.$"):
        samples.validate(table, dataset.samples)


def test_each_files_keywords_are_kept_and_fill_a_column(tmp_path):
    """$FIL names three of the files differently from their names on disk (the wsp's names); $DATE is the run day."""
    published = pd.read_csv(COVID / "samples.csv").sort_values("fcs_file").iloc[[0, 3, 4, -2, -1]]
    paths = [COVID / "fcs" / name for name in published["fcs_file"]]
    dataset, keywords = samples.read_study(paths, [p.name for p in paths])
    assert dataset.samples == published["fcs_file"].tolist()
    assert [keywords[s]["$FIL"] for s in dataset.samples] == published["wsp_sample_name"].tolist()
    assert not any(k.startswith(("$P1", "$BEGIN")) for k in keywords[dataset.samples[0]]), "no layout keywords"
    workspace = Workspace(tmp_path)
    key = workspace.add_dataset(dataset)
    samples.save_keywords(workspace, key, keywords)
    again = samples.load_keywords(workspace, key, dataset)
    assert again == keywords and {"$FIL", "TUBE NAME", "$DATE"} <= set(samples.keyword_choices(again, dataset.samples))
    filled = samples.fill_from_keyword(samples.template(dataset.samples), "batch", "$DATE", again)
    assert filled["batch"].tolist() == published["fcs_DATE"].tolist()


def test_a_column_that_splits_samples_as_the_condition_does_is_confounded():
    table = pd.DataFrame({"sample": list("abcdef"), samples.DISPLAY: list("ABCDEF"),
                          "condition": ["ICU"] * 3 + ["W"] * 3, "run day": ["Tue"] * 3 + ["Fri"] * 3,
                          "batch": ["1", "2", "1", "2", "1", "2"], "patient": list("pqrstu"),
                          "site": ["x", "x", "x", "y", "y", None]})
    assert samples.confounded(table, "condition") == ["run day"], "patients and batches span the conditions"
    assert samples.confounded(table, "run day") == ["condition"]
    three = pd.DataFrame({"sample": list("abcdef"), "condition": ["ICU", "ICU", "HC", "W", "W", "HC"],
                          "batch": ["1", "1", "2", "2", "2", "1"]})
    assert samples.confounded(three, "condition") == []
    assert samples.confounded(three, "condition", among=["ICU", "W"]) == ["batch"], "batch 1 is ICU, batch 2 is W"
    assert samples.groupings(table) == ["condition", "run day", "batch", "patient", "site"]
