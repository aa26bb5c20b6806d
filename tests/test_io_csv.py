"""CSV/TSV reading and multi-file loading: real Levine tables, delimiters, bad rows and refusals."""
from __future__ import annotations

import time

import numpy as np
import pytest

from cytoauto_core.base.errors import CytoInputError
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


def test_a_few_bad_cells_keep_the_channel(tmp_path):
    """The issue's example: one non-numeric cell must not turn CD4 into an annotation."""
    ds = read_csv(write_text(tmp_path, "m.csv", "CD3,CD4\n1,2\n3,x\n5,6\n"))
    assert ds.channel_names == ["CD3", "CD4"]
    np.testing.assert_array_equal(ds.events, [[1, 2], [5, 6]])
    assert ds.warnings == ["'m.csv' has 1 cell in column 'CD4' that is not a number "
                           "(the first in row 2 below the header: 'x'); its row was dropped."]


def test_bad_cells_in_a_real_table(tmp_path):
    lines = (LEVINE / "Levine_32dim_labeled30k_arcsinh.csv").read_text().splitlines(keepends=True)[:2001]
    clean = read_csv(write_text(tmp_path, "clean.csv", "".join(lines)))
    for i in (500, 1500):  # data rows 500 and 1500 get a damaged CD4 cell
        cells = lines[i].split(",")
        cells[5] = "n.d." if i == 500 else "1.2.3"
        lines[i] = ",".join(cells)
    ds = read_csv(write_text(tmp_path, "bad.csv", "".join(lines)))
    assert ds.channel_names == clean.channel_names and ds.n_cells == 1998
    keep = np.setdiff1d(np.arange(2000), [499, 1499])
    np.testing.assert_array_equal(ds.events, clean.events[keep])
    assert list(ds.annotations["population"]) == list(clean.annotations["population"].iloc[keep])
    assert ds.warnings == ["'bad.csv' has 2 cells in column 'CD4' that are not numbers "
                           "(the first in row 500 below the header: 'n.d.'); their rows were dropped."]


def test_text_columns_stay_annotations(tmp_path):
    ds = read_csv(write_text(tmp_path, "t.csv", "A,kind\n1,x1\n2,7\n3,y\n"))
    assert ds.channel_names == ["A"] and list(ds.annotations["kind"]) == ["x1", "7", "y"] and ds.warnings == []


@pytest.mark.parametrize("content,line", [
    (b"CD3,CD4,pop\n1,2,a\n3,4,\xff\xfe\n", 3),
    (b"CD3;CD4\n1,5;2\n3;4\n5;\xc3\n", 4),
    (b"A B\n1 2\n\x80 3\n", 3),
    (b"\xe9A,B\n1,2\n", 1),
])
def test_invalid_utf8_is_one_sentence_with_the_line(tmp_path, content, line):
    path = tmp_path / "u.csv"
    path.write_bytes(content)
    with pytest.raises(CytoInputError) as exc:
        read_file(path)
    msg = str(exc.value)
    assert msg.startswith(f"'u.csv' is not UTF-8 text: line {line} holds the byte 0x") and "\n" not in msg


def test_parser_errors_show_no_control_bytes(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"A,B\n1,2\n3,4,\x00\x07\n")
    with pytest.raises(CytoInputError) as exc:
        read_file(path)
    msg = str(exc.value)
    assert "'r.csv' could not be read as a table" in msg and not any(ord(c) < 32 for c in msg)


def test_missing_final_line_break_is_a_warning(tmp_path):
    ds = read_csv(write_text(tmp_path, "c.csv", "A,B\n1,2\n3,4"))
    np.testing.assert_array_equal(ds.events, [[1, 2], [3, 4]])
    assert ds.warnings == ["'c.csv' does not end with a line break, so its last row may be cut short."]


@pytest.mark.parametrize("sep", [",", " ", ";"])
@pytest.mark.parametrize("shape", ["wide header", "long first row", "long later row"])
def test_millions_of_fields_are_refused_at_once(tmp_path, sep, shape):
    """A header of 2 million names (a 14 MB file took minutes and over 5 GB as a whitespace table), or a short
    header with a row of 2 million values, is refused within a second."""
    many = sep.join(["1,5" if sep == ";" else "1"] * 2_000_000)
    text = {"wide header": sep.join(f"c{i}" for i in range(2_000_000)) + "\n" + many,
            "long first row": f"a{sep}b\n{many}",
            "long later row": f"a{sep}b\n{'1,5;2' if sep == ';' else f'1{sep}2'}\n{many}"}[shape]
    path = write_text(tmp_path, "wide.csv", text + "\n")
    started = time.perf_counter()
    with pytest.raises(CytoInputError) as refused:
        read_csv(path)
    assert time.perf_counter() - started < 2
    assert str(refused.value).startswith("'wide.csv' ") and "\n" not in str(refused.value)


def test_r_row_names_stay_out_of_the_channels(tmp_path):
    """R's write.table(sep = ' ') writes one field more per row than names in the header: the row names."""
    ds = read_csv(write_text(tmp_path, "r.txt", '"CD3" "CD4"\n"1" 1.5 2\n"2" 3 4\n'))
    assert ds.channel_names == ['"CD3"', '"CD4"'] and ds.events.tolist() == [[1.5, 2], [3, 4]]
    one = read_csv(write_text(tmp_path, "one.txt", "CD3 CD4\nr1 1.5 2\n"))
    assert one.channel_names == ["CD3", "CD4"] and one.events.tolist() == [[1.5, 2]]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst", ".lz4"])
def test_a_file_name_never_makes_the_reader_decompress(tmp_path, suffix):
    """The reader reads the bytes it was given: a table named like an archive is read as the text it is, and a real
    archive (a decompression bomb, maybe) is refused as not being text, never inflated."""
    import gzip

    plain = tmp_path / f"table.csv{suffix}"
    plain.write_text("CD3,CD4\n1.5,2\n3,4\n")
    np.testing.assert_array_equal(read_csv(plain).events, [[1.5, 2], [3, 4]])
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(b"CD3,CD4\n" + b"1,2\n" * 100_000))
    with pytest.raises(CytoInputError, match=r"^'packed\.csv\.gz' is not UTF-8 text"):
        read_csv(packed)
