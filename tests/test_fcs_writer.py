"""FCS 3.1 export: round trips through our reader and plain flowio, extra channels, populations, metadata."""
from __future__ import annotations

import json

import flowio
import numpy as np
import pandas as pd

from cytoauto_core.base.dataset import Dataset, Spillover, make_channels
from cytoauto_core.io import fcs_writer, read_fcs, read_file, write_fcs
from tests.conftest import CORPUS


def small_dataset(n: int = 500) -> Dataset:
    """Three channels (one with a marker), a population annotation with unassigned cells and a spillover."""
    rng = np.random.default_rng(3)
    events = rng.normal(50, 20, (n, 3)).astype(np.float32)
    pops = np.array(["T cells", "B cells", "unassigned", "NK/T"], dtype=object)[rng.integers(0, 4, n)]
    return Dataset(
        events=events, channels=make_channels(["FL1-A", "FL2-A", "Time"], ["CD3", None, None]),
        samples=["s"], sample_ids=np.zeros(n, np.int32), annotations=pd.DataFrame({"population": pops}),
        spillover=Spillover(["FL1-A", "FL2-A"], np.array([[1.0, 0.05], [0.1, 1.0]])),
        metadata={"$CYT": "Test/Cytometer", "$P1N": "stale", "$TOT": "1", "$SPILLOVER": "stale", "OPERATOR": "me"},
        name="s",
    )


def test_dataset_round_trip_with_populations_and_extras(tmp_path):
    ds = small_dataset()
    conf = np.linspace(0, 1, ds.n_cells)
    path = write_fcs(tmp_path / "out.fcs", ds, extra_channels={"confidence": conf, "map_x": conf * 2})
    back = read_fcs(path)
    assert back.channel_names == ["FL1-A", "FL2-A", "Time", "confidence", "map_x"]
    assert back.channels[0].marker == "CD3" and back.channels[3].is_feature is False
    np.testing.assert_array_equal(back.events[:, :3], ds.events)
    np.testing.assert_allclose(back.events[:, 3], conf, rtol=1e-6)
    assert list(back.annotations["population"].astype(str)) == list(ds.annotations["population"])
    assert back.spillover.channels == ["FL1-A", "FL2-A"]
    np.testing.assert_allclose(back.spillover.matrix, ds.spillover.matrix)
    assert back.metadata["$CYT"] == "Test/Cytometer" and back.metadata["OPERATOR"] == "me"
    assert back.metadata["$TOT"] == str(ds.n_cells) and back.metadata["$P1N"] == "FL1-A"
    assert back.warnings == []

    fd = flowio.FlowData(path)  # plain flowio, no leniency options
    assert (fd.event_count, fd.channel_count) == (ds.n_cells, 6)
    assert fd.pnn_labels == ["FL1-A", "FL2-A", "Time", "confidence", "map_x", "population_id"]
    np.testing.assert_array_equal(fd.as_array(preprocess=False)[:, :3], ds.events)
    mapping = json.loads(fd.text["cytoauto_populations"])
    assert sorted(mapping.values()) == ["B cells", "NK/T", "T cells"]
    ids = fd.as_array(preprocess=False)[:, 5]
    names = np.array([mapping.get(str(int(i)), "unassigned") for i in ids])
    assert (names == ds.annotations["population"].to_numpy()).all()


def test_array_api_and_corpus_re_export(tmp_path):
    ds = read_fcs(CORPUS / "flowsom_ff.fcs")
    path = write_fcs(tmp_path / "ff.fcs", ds)
    back = read_file(path)
    np.testing.assert_array_equal(back.events, ds.events)
    assert [c.marker for c in back.channels] == [c.marker for c in ds.channels]
    assert back.spillover.channels == ds.spillover.channels
    arr = write_fcs(tmp_path / "arr.fcs", ds.events[:10], ds.channel_names,
                    metadata={"$COM": "a/b"})
    assert flowio.FlowData(arr).text["com"] == "a/b"


def test_big_file_header_offsets_are_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(fcs_writer, "HEADER_LIMIT", 100)
    events = np.arange(300, dtype=np.float32).reshape(100, 3)
    path = write_fcs(tmp_path / "big.fcs", events, ["a", "b", "c"])
    assert path.read_bytes()[26:42] == b"       0       0"
    back = read_fcs(path)
    np.testing.assert_array_equal(back.events, events)
    assert back.warnings == []
    fd = flowio.FlowData(path, ignore_offset_discrepancy=True)  # flowio accepts zeros only above 99,999,999 bytes
    np.testing.assert_array_equal(fd.as_array(preprocess=False), events)


def _text_of(path) -> tuple[str, dict[str, str]]:
    """The file's TEXT delimiter and its keywords as plain flowio reads them."""
    return path.read_bytes()[58:59].decode(), flowio.FlowData(str(path)).text


def test_delimiter_is_one_no_keyword_or_value_holds(tmp_path):
    events = np.ones((4, 2), np.float32)
    assert _text_of(write_fcs(tmp_path / "plain.fcs", events, ["a", "b"]))[0] == "/"  # the usual one when free
    delimiter, text = _text_of(write_fcs(tmp_path / "com.fcs", events, ["a", "b"], metadata={"$COM": "a/b"}))
    assert (delimiter, text["com"]) == ("|", "a/b")
    meta = {"FILENAME": "/tmp/run 1/", "PATH|NOTE": "x|y", "$ORIGINALITY": "Original", "$INST": " ", "EMPTY": ""}
    path = write_fcs(tmp_path / "paths.fcs", events, ["a/b", "c"], metadata=meta)
    delimiter, text = _text_of(path)
    assert delimiter == "\x0c"
    assert (text["filename"], text["path|note"], text["p1n"], text["inst"]) == ("/tmp/run 1/", "x|y", "a/b", " ")
    assert text["originality"] == "DataModified" and "empty" not in text  # FCS forbids empty values
    assert read_fcs(path).metadata["FILENAME"] == "/tmp/run 1/"


def test_when_every_candidate_occurs_the_doubled_one_is_inside_values_only(tmp_path):
    inside = {f"K{i}": f"a{d}b" for i, d in enumerate(fcs_writer.DELIMITERS)}
    edges = {f"E{i}": f"{d}x" for i, d in enumerate(fcs_writer.DELIMITERS) if d != "\x1e"}
    path = write_fcs(tmp_path / "full.fcs", np.ones((3, 1), np.float32), ["a"], metadata=inside | edges)
    delimiter, text = _text_of(path)
    assert delimiter == "\x1e" and path.read_bytes().count(b"a\x1e\x1eb") == 1
    assert {k: text[k.lower()] for k in inside | edges} == inside | edges
    assert {k: v for k, v in read_fcs(path).metadata.items() if k in inside | edges} == inside | edges


def test_flowio_misreads_a_doubled_delimiter_at_a_value_edge(tmp_path, monkeypatch):
    """Why the delimiter is chosen: spec-correct doubling of a leading '/' shifts every later keyword in flowio."""
    monkeypatch.setattr(fcs_writer, "DELIMITERS", ("/",))
    path = write_fcs(tmp_path / "old.fcs", np.ones((3, 1), np.float32), ["a"],
                     metadata={"FILENAME": "/tmp/x", "NEXT": "kept"})
    assert read_fcs(path).metadata["NEXT"] == "kept"
    assert "next" not in flowio.FlowData(str(path)).text
