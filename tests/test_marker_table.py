"""The marker table: Levine_32dim's expected-expression table read and matched to its FCS file, each refusal in its
one sentence, and seeded byte mutations of the real table that must parse or be refused cleanly."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from cytoauto_core.base.dataset import Channel
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file
from cytoauto_core.io.marker_table import (MAX_BYTES, MAX_MARKERS, MAX_POPULATIONS, MarkerTable, match_markers,
                                        read_marker_table)
from fuzzing import CONTROL
from tests.conftest import LEVINE

TABLE = LEVINE / "knowledge_table" / "levine32_expected_expression.csv"
NAME = "markers.csv"
LEVINE_MARKERS = ["CD19", "CD4", "CD8", "CD34", "CD20", "CD45", "CD123", "CD11c", "CD7", "CD16", "CD38", "CD3",
                  "HLA-DR", "CD64"]


@pytest.fixture(scope="module")
def levine():
    return read_file(LEVINE / "Levine_32dim_10k.fcs")


def test_levine_table_is_read_as_written():
    table = read_marker_table(TABLE.read_bytes(), TABLE.name)
    assert table.markers == LEVINE_MARKERS
    assert len(table.populations) == 14 and table.populations[:3] == ["Basophils", "CD4 T cells", "CD8 T cells"]
    assert table.values.dtype == np.int8 and table.values.shape == (14, 14)
    cd4 = dict(zip(table.markers, table.values[table.populations.index("CD4 T cells")].tolist()))
    assert (cd4["CD3"], cd4["CD4"], cd4["CD8"], cd4["CD45"]) == (1, 1, -1, 0)  # NA: not informative


def test_levine_table_matches_every_channel_of_its_fcs(levine):
    match = match_markers(read_marker_table(TABLE.read_bytes(), TABLE.name), levine)
    assert match.pairs == [(m, m) for m in LEVINE_MARKERS] and match.notes == []


def test_other_spellings_and_delimiters_read_and_match(levine):
    text = "population;hla_dr;cd 3;Cd4;CD-8\nCD4 T;-;+;POS;−1\nCD8 T;neg;1;-1;+1\nDR+;1;NA;;0\n"
    for data in (text.encode(), ("\ufeff" + text).encode(), text.replace(";", "\t").encode(),
                 text.replace("\n", "\r\n").encode()):
        table = read_marker_table(data, NAME)
        assert table.populations == ["CD4 T", "CD8 T", "DR+"] and table.markers == ["hla_dr", "cd 3", "Cd4", "CD-8"]
        assert table.values.tolist() == [[-1, 1, 1, -1], [-1, 1, -1, 1], [1, 0, 0, 0]]
        match = match_markers(table, levine)
        assert match.pairs == [("hla_dr", "HLA-DR"), ("cd 3", "CD3"), ("Cd4", "CD4"), ("CD-8", "CD8")]
        assert match.notes == []


def test_spare_blank_columns_and_cells_are_dropped_and_short_rows_are_blank():
    table = read_marker_table(b"Populations,CD3,CD4,,\nT4,1,1,,,\nT8,1,-1\nB,-1\n", NAME)
    assert table.markers == ["CD3", "CD4"] and table.values.tolist() == [[1, 1], [1, -1], [-1, 0]]


def test_unmatched_ambiguous_and_taken_markers_are_left_out_in_one_sentence(levine):
    table = read_marker_table(b"Populations,CD3,CD64,CD999,Er170Di\nT,1,-1,1,1\nM,-1,1,-1,-1\n", NAME)
    channels = list(levine.channels)
    channels[channels.index(next(c for c in channels if c.name == "CD3"))] = Channel("Er170Di", "CD3")
    relabelled = dataclasses.replace(levine, channels=channels)
    match = match_markers(table, relabelled)
    assert match.pairs == [("CD3", "Er170Di"), ("CD64", "CD64")]
    assert match.notes == [
        "The marker table's 'CD999' matches no channel of 'Levine_32dim_10k.fcs'; it is left out.",
        "The marker table's 'Er170Di' matches channel 'Er170Di' of 'Levine_32dim_10k.fcs', which 'CD3' already "
        "matches; it is left out.",
    ]
    twice = [Channel("Sm152Di", "cd64"), Channel("Sm154Di", "CD_64")] + [c for c in channels if c.name != "CD64"]
    events = np.zeros((1, len(twice)), np.float32)
    two = dataclasses.replace(levine, channels=twice, events=events, sample_ids=np.zeros(1, np.int32))
    assert match_markers(table, two).notes[0] == ("The marker table's 'CD64' matches 2 channels of "
                                                  "'Levine_32dim_10k.fcs' ('Sm152Di', 'Sm154Di'); it is left out.")


REFUSALS = [
    (b"Populations,CD3,CD4\nT4,1,1\nT4,1,-1\n",
     "'markers.csv' names population 'T4' twice; give each population one row."),
    (b"Populations,CD3,CD4\nCD4 T,1,1\nCD4_T,1,-1\n",
     "'markers.csv' names population 'CD4 T' twice (as 'CD4 T' and 'CD4_T'); give each population one row."),
    (b"Populations,CD3,CD4\nT4,1,1\n ,1,-1\n",
     "'markers.csv' has a row with values but no population name; give every row its population."),
    (b"Populations,CD3,CD4\nT4,1,yes\n",
     "'markers.csv' gives population 'T4' the value 'yes' for marker 'CD4'; use 1 (expressed), -1 (not expressed) or "
     "leave it blank (not informative)."),
    (b"Populations\nT4\nT8\n",
     "'markers.csv' has no marker columns; put the population names in the first column and one marker per further "
     "column."),
    (b"Populations,CD3,CD4\nT4,1,1\nB,NA,\n",
     "'markers.csv' gives population 'B' no informative marker (every value is blank, NA or 0), so no cell could be "
     "named by it."),
    (b"Populations,CD3,CD4,CD8\nT4,1,1,-1\nT,1,1,-1\n",
     "'markers.csv' gives populations 'T4' and 'T' the same value for every marker, so it cannot tell them apart; add "
     "a marker that differs or merge them."),
    (b"Populations,HLA-DR,HLA DR\nT4,1,1\n",
     "'markers.csv' names marker 'HLA-DR' twice (as 'HLA-DR' and 'HLA DR'); give each marker one column."),
    (b"Populations,CD3,,CD4\nT4,1,1,1\n", "'markers.csv' has a marker with no name; give every marker its name."),
    (b"Populations,CD3,CD4\nT4,1,1,1\n",
     "'markers.csv' has 4 values in the row of 'T4' but 3 columns in its header, so it was not read."),
    (b"Populations,CD3,CD4\n", "'markers.csv' has no population rows below its header."),
    (b" \n\n", "'markers.csv' is empty."),
    (b"Populations,CD3\nT\xe9,1\n",
     "'markers.csv' is not UTF-8 text (save the table as UTF-8, e.g. 'CSV UTF-8' in Excel)."),
    (b'Populations,CD3\n"T,1\n',
     "'markers.csv' could not be read as a table (a cell is too long or its quotes are not closed)."),
    (b"Populations,CD3\n" + b"x" * (MAX_BYTES - 100) + b",1\n",
     "'markers.csv' could not be read as a table (a cell is too long or its quotes are not closed)."),
    (b"x" * (MAX_BYTES + 1), "'markers.csv' holds 1.0 MB; a marker table of at most 1 MB can be read."),
    (("Populations," + ",".join(f"M{j}" for j in range(MAX_MARKERS + 1)) + "\n").encode(),
     f"'markers.csv' has {MAX_MARKERS + 2} columns; a marker table of at most {MAX_MARKERS} markers can be read."),
    (("Populations,CD3\n" + "".join(f"P{i},1\n" for i in range(MAX_POPULATIONS + 1))).encode(),
     f"'markers.csv' has more than {MAX_POPULATIONS} rows; a marker table of at most {MAX_POPULATIONS} populations "
     f"can be read."),
]


@pytest.mark.parametrize("data, message", REFUSALS)
def test_each_problem_is_refused_in_one_sentence_naming_the_file(data, message):
    with pytest.raises(CytoInputError) as refused:
        read_marker_table(data, NAME)
    assert str(refused.value) == message


def test_a_table_is_stored_and_loaded_again_as_json():
    table = read_marker_table(TABLE.read_bytes(), TABLE.name)
    again = MarkerTable.from_dict(table.to_dict())
    assert (again.populations, again.markers) == (table.populations, table.markers)
    assert again.values.dtype == np.int8 and np.array_equal(again.values, table.values)
    damaged = "The stored marker table is damaged, so it was not loaded; read the table again."
    for stored in ({}, {"populations": ["A"], "markers": ["CD3"], "values": [[2]]},
                   {"populations": ["A"], "markers": ["CD3"], "values": [[1, 1]]}, []):
        with pytest.raises(CytoInputError, match=damaged):
            MarkerTable.from_dict(stored)
    with pytest.raises(CytoInputError, match="^The stored marker table names population 'A' twice;"):
        MarkerTable.from_dict({"populations": ["A", "A"], "markers": ["CD3"], "values": [[1], [-1]]})


def _mutations(blob: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """`n` seeded damaged versions of `blob`: flipped bits, inserted or deleted bytes (delimiters, quotes, line breaks,
    signs, a BOM, invalid UTF-8), cuts and repeated lines."""
    inserts = [b",", b";", b"\t", b'"', b"\n", b"\r", b"-", b"+", b"\xef\xbb\xbf", b"\x80", b"\x00", b"NA",
               "\u2212".encode()]
    lines = blob.splitlines(keepends=True)
    out = []
    for k in range(n):
        p = int(rng.integers(0, len(blob)))
        kind = k % 5
        if kind == 0:
            m = bytearray(blob)
            m[p] ^= 1 << int(rng.integers(8))
            out.append(bytes(m))
        elif kind == 1:
            out.append(blob[:p] + inserts[int(rng.integers(len(inserts)))] + blob[p:])
        elif kind == 2:
            out.append(blob[:p] + blob[p + int(rng.integers(1, 4)):])
        elif kind == 3:
            out.append(blob[:p])
        else:
            i = int(rng.integers(0, len(lines)))
            out.append(b"".join(lines[:i + 1] + [lines[i]] + lines[i + 1:]))
    return out


def test_fuzz_damaged_tables_parse_or_are_refused_cleanly(levine):
    rng = np.random.default_rng(23)
    cases = _mutations(TABLE.read_bytes(), rng, 400)
    started, outcomes = time.monotonic(), {"read": 0, "refused": 0}
    for i, blob in enumerate(cases):
        name = f"case{i:03d}.csv"
        try:
            table = read_marker_table(blob, name)
        except CytoInputError as exc:
            message = str(exc)
            assert f"'{name}'" in message and message.endswith(".") and not CONTROL.search(message), (i, message)
            outcomes["refused"] += 1
            continue
        assert table.values.shape == (len(table.populations), len(table.markers)) and table.values.dtype == np.int8
        assert np.isin(table.values, (-1, 0, 1)).all() and table.values.any(axis=1).all(), i
        match = match_markers(table, levine)
        assert len(match.pairs) + len(match.notes) == len(table.markers), i
        outcomes["read"] += 1
    print(f"\nmarker-table fuzz: {len(cases)} mutations in {time.monotonic() - started:.1f} s: {outcomes}")
    assert outcomes["read"] >= 50 and outcomes["refused"] >= 100
