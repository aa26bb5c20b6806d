"""CSV/TSV reading and multi-file loading: real Levine tables, delimiters, bad rows and refusals."""
from __future__ import annotations

import numpy as np
import pytest

from cytoauto_core.errors import CytoInputError
from cytoauto_core.io import read_csv, read_file, read_files, write_fcs
from tests.conftest import CORPUS, LEVINE


def write_text(tmp_path, name: str, text: str):
    """A small text file in tmp_path."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_levine_labeled_csv():
    ds = read_file(LEVINE / "Levine_32dim_labeled30k_arcsinh.csv")
    assert ds.n_cells == 30_000 and len(ds.channels) == 33
    assert ds.channel_names[0] == "CD45RA" and "label" in ds.channel_names and "label" not in ds.feature_names
    assert list(ds.annotations.columns) == ["population", "split"]
    assert (ds.annotations["population"] == "CD4_T_cells").sum() == 7506
    assert ds.events.dtype == np.float32 and ds.warnings == []


@pytest.mark.parametrize("sep", [",", "\t", ";", "  "])
def test_delimiters(tmp_path, sep):
    path = write_text(tmp_path, "t.txt", sep.join(["CD3", "CD4", "kind"]) + "\n" + sep.join(["1.5", "2", "x"]) + "\n"
                      + sep.join(["3", "-4e2", "y"]) + "\n")
    ds = read_csv(path)
    assert ds.channel_names == ["CD3", "CD4"]
    np.testing.assert_array_equal(ds.events, [[1.5, 2], [3, -400]])
    assert list(ds.annotations["kind"]) == ["x", "y"]


def test_decimal_comma_semicolon(tmp_path):
    ds = read_csv(write_text(tmp_path, "eu.csv", "A;B\n1,5;2,25\n3;4\n"))
    np.testing.assert_array_equal(ds.events, [[1.5, 2.25], [3, 4]])


def test_nan_rows_dropped_and_duplicate_headers(tmp_path):
    ds = read_csv(write_text(tmp_path, "n.csv", "A,A,pop\n1,2,a\nNaN,3,b\n4,inf,c\n5,6,\n"))
    assert ds.channel_names == ["A", "A_2"]
    np.testing.assert_array_equal(ds.events, [[1, 2], [5, 6]])
    assert list(ds.annotations["pop"]) == ["a", ""]
    assert ds.warnings == ["'n.csv' has 2 rows with missing or infinite numbers; they were dropped."]


@pytest.mark.parametrize("text,expected", [
    ("", "is empty"),
    ("a|b|c\n1|2|3\n4|5|6\n", "has no numeric column"),
    ("name,kind\nx,y\n", "has no numeric column"),
    ("A,B\n", "no rows"),
    ("A,B\nnan,1\n", "no row without missing"),
])
def test_refusals(tmp_path, text, expected):
    path = write_text(tmp_path, "bad.csv", text)
    with pytest.raises(CytoInputError) as exc:
        read_file(path)
    msg = str(exc.value)
    assert expected in msg and "'bad.csv'" in msg and msg.endswith(".") and "\n" not in msg


def test_read_files_combines_common_channels(tmp_path):
    a = write_text(tmp_path, "a.csv", "CD3,CD4,CD8\n1,2,3\n4,5,6\n")
    b = write_fcs(tmp_path / "b.dat", np.array([[7, 8]], np.float32), ["CD4", "CD3"])  # FCS without .fcs suffix
    ds = read_files([a, b])
    assert ds.name == "2 files" and ds.samples == ["a.csv", "b.dat"]
    assert ds.channel_names == ["CD3", "CD4"]
    np.testing.assert_array_equal(ds.events, [[1, 2], [4, 5], [8, 7]])
    np.testing.assert_array_equal(ds.sample_ids, [0, 0, 1])
    assert any("CD8" in w and "dropped" in w for w in ds.warnings)
    c = write_text(tmp_path, "c.csv", "X\n1\n")
    with pytest.raises(CytoInputError, match="share no channel names"):
        read_files([a, c])


def test_read_files_same_file_twice_gets_unique_samples():
    path = CORPUS / "flowkit_2d_01.fcs"
    ds = read_files([path, path])
    assert ds.n_cells == 20_000 and ds.samples == ["flowkit_2d_01.fcs", "flowkit_2d_01.fcs_2"]
