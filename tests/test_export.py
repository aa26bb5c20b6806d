"""Exports re-read with the project's reader and with plain flowio: appended channels and names intact."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import flowio
import flowkit
import numpy as np
import pandas as pd
import pytest

from conftest import CORPUS
from cytoauto_core.study.demo import make_demo
from cytoauto_core.io.export import abundance, csv_bytes, labelled_frame, legend_frame, write_labelled_fcs, write_split_fcs
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.io import read_file, read_files


def _cells(n: int, seed: int = 0) -> LabelledCells:
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, 3, n).astype(np.int32)
    return LabelledCells(ids, {0: "T cells", 1: "B cells", 2: "NK cells"}, rng.uniform(0, 1, n).astype(np.float32),
                         coords=rng.normal(0, 1, (n, 2)).astype(np.float32))


def test_labelled_fcs_round_trip_with_both_readers(tmp_path):
    source = read_file(CORPUS / "flowio_G11.fcs")
    cells = _cells(source.n_cells)
    path = tmp_path / "labelled.fcs"
    write_labelled_fcs(path, source, cells)

    again = read_file(path)
    assert again.n_cells == source.n_cells
    assert again.channel_names[: len(source.channel_names)] == source.channel_names
    np.testing.assert_array_equal(np.asarray(again.events)[:, : source.events.shape[1]], source.events)
    assert {"confidence", "map_x", "map_y"} <= set(again.channel_names)
    assert (again.annotations["population"].astype(str).to_numpy() == cells.population_names()).all()
    assert again.spillover is not None, "the original spillover matrix is kept"

    raw = flowio.FlowData(str(path))
    names = [raw.channels[i + 1]["pnn"] for i in range(raw.channel_count)]
    events = np.reshape(np.asarray(raw.events, dtype=np.float32), (-1, raw.channel_count))
    np.testing.assert_array_equal(events[:, names.index("population_id")], cells.population_id)
    np.testing.assert_allclose(events[:, names.index("confidence")], cells.confidence)
    text = {k.lower().lstrip("$"): v for k, v in raw.text.items()}
    assert "T cells" in text["cytoauto_populations"]


def test_labelled_csv_has_every_column_a_user_needs():
    ds = make_demo(2_000, seed=1)
    cells = _cells(ds.n_cells)
    frame = pd.read_csv(io.BytesIO(csv_bytes(labelled_frame(ds, cells, include_probabilities=False))))
    assert len(frame) == 2_000
    markers = [c.marker for c in ds.channels]
    assert frame.columns[: len(ds.channel_names)].tolist() == markers, "columns are named by marker, not detector"
    assert "CD45" in frame.columns and "Pr141Di" not in frame.columns
    assert {"population_id", "population", "confidence", "map_x", "map_y", "sample", "annotation_population"} <= set(frame.columns)
    assert (frame["population"].to_numpy() == cells.population_names()).all()
    assert (frame.loc[frame["population_id"] == -1, "population"] == "unassigned").all()
    np.testing.assert_allclose(frame[ds.channels[0].marker], ds.events[:, 0], rtol=1e-6)


def test_labelled_fcs_keeps_detectors_as_pnn_and_markers_as_pns(tmp_path):
    ds = make_demo(1_000, seed=2)
    write_labelled_fcs(tmp_path / "labelled.fcs", ds, _cells(ds.n_cells))
    raw = flowio.FlowData(str(tmp_path / "labelled.fcs"))
    channels = [raw.channels[i + 1] for i in range(len(ds.channels))]
    assert [c["pnn"] for c in channels] == ds.channel_names
    assert [c.get("pns") or c["pnn"] for c in channels] == [c.marker for c in ds.channels]


def test_a_marker_named_like_an_export_column_keeps_its_detector_name():
    ds = make_demo(1_000, seed=3)
    ds.channels[0] = replace(ds.channels[0], marker="population")
    frame = labelled_frame(ds, _cells(ds.n_cells))
    assert frame.columns[0] == ds.channels[0].name
    assert frame["population"].isin(["T cells", "B cells", "NK cells", "unassigned"]).all()


def test_abundance_percentages_per_sample():
    ids = np.array([0, 0, 1, -1, 1, 1])
    table = abundance(ids, {0: "a", 1: "b"}, np.array([0, 0, 0, 1, 1, 1]), ["s1", "s2"])
    s1 = table[table["sample"] == "s1"].set_index("population")
    assert s1.loc["a", "cells"] == 2 and abs(s1.loc["b", "percent"] - 100 / 3) < 1e-9
    s2 = table[table["sample"] == "s2"].set_index("population")
    assert s2.loc["unassigned", "cells"] == 1 and s2.loc["b", "cells"] == 2


def _flowio(path) -> tuple[list[str], np.ndarray, dict[str, str], list[int]]:
    """Channel names, events, TEXT keywords (lower-case, no '$') and every $PnR, read by plain flowio."""
    raw = flowio.FlowData(str(path))
    names = [raw.channels[i + 1]["pnn"] for i in range(raw.channel_count)]
    events = raw.as_array(preprocess=False)
    text = {k.lower().lstrip("$"): v for k, v in raw.text.items()}
    return names, events, text, [int(text[f"p{i + 1}r"]) for i in range(raw.channel_count)]


def test_fcs_export_flowjo_reads_back_event_ids_labels_legend_and_ranges(tmp_path):
    """A two-sample flow dataset read by flowio and FlowKit: every value of every channel, event ids per sample, a
    $PnR above every value, the legend in TEXT."""
    source = read_files([CORPUS / "flowio_G11.fcs", CORPUS / "flowio_3FITC_4PE_004.fcs"], ["g11.fcs", "fitc.fcs"])
    cells = _cells(source.n_cells)
    cells.names[7] = "rare, id 7"
    cells.population_id[:3] = 7  # a large id: its range must still hold it
    path = tmp_path / "labelled.fcs"
    write_labelled_fcs(path, source, cells)

    names, events, text, ranges = _flowio(path)
    p = len(source.channel_names)
    assert names == source.channel_names + ["event_id", "confidence", "map_x", "map_y", "population_id"]
    np.testing.assert_array_equal(events[:, :p], source.events)
    first = int((source.sample_ids == 0).sum())
    np.testing.assert_array_equal(events[:, p], np.r_[np.arange(first), np.arange(source.n_cells - first)])
    np.testing.assert_array_equal(events[:, p + 1], cells.confidence)
    np.testing.assert_array_equal(events[:, p + 2:p + 4], cells.coords)
    np.testing.assert_array_equal(events[:, -1], cells.population_id)
    assert all(r > top for r, top in zip(ranges, events.max(axis=0))), (ranges, events.max(axis=0))
    assert ranges[-1] == 8
    legend = {int(k): v for k, v in json.loads(text["cytoauto_populations"]).items()}
    assert legend == cells.names
    assert {i: text[f"cytoauto_population_{i}"] for i in cells.names} == cells.names

    table = legend_frame(cells, {0: "#111111"})
    assert table["population"].tolist() == ["T cells", "B cells", "NK cells", "rare, id 7", "unassigned"]
    assert table["cells"].tolist() == [int((cells.population_id == i).sum()) for i in (0, 1, 2, 7, -1)]
    assert table["color"].tolist() == ["#111111", "", "", "", ""]

    sample = flowkit.Sample(str(path))  # FlowKit, as FlowJo-minded tools read it: the same values and keywords
    assert sample.pnn_labels == names
    np.testing.assert_array_equal(sample.get_events(source="raw"), events)
    metadata = sample.get_metadata()
    assert json.loads(metadata["cytoauto_populations"]) == {str(k): v for k, v in cells.names.items()}
    assert metadata["cytoauto_population_7"] == "rare, id 7"

    again = read_file(path)  # our reader: the legend becomes the population annotation, stale keywords do not stay
    write_labelled_fcs(tmp_path / "again.fcs", again, _cells(again.n_cells, seed=5))
    _, _, text2, _ = _flowio(tmp_path / "again.fcs")
    assert "cytoauto_population_7" not in text2


@pytest.mark.parametrize("by", ["population", "sample"])
def test_split_fcs_zip_holds_every_cell_once(tmp_path, by):
    source = read_files([CORPUS / "flowio_G11.fcs", CORPUS / "flowio_3FITC_4PE_004.fcs"], ["g11.fcs", "fitc.fcs"])
    cells = _cells(source.n_cells)
    write_labelled_fcs(tmp_path / "whole.fcs", source, cells)
    _, whole, _, _ = _flowio(tmp_path / "whole.fcs")
    inside = write_split_fcs(tmp_path / "split.zip", source, cells, by)
    expected = (["T_cells.fcs", "B_cells.fcs", "NK_cells.fcs", "unassigned.fcs"] if by == "population"
                else ["g11.fcs", "fitc.fcs"]) + ["legend.csv"]
    assert inside == expected
    parts = []
    with zipfile.ZipFile(tmp_path / "split.zip") as archive:
        assert archive.namelist() == expected
        archive.extractall(tmp_path / "parts")
        legend = pd.read_csv(archive.open("legend.csv"))
    assert legend["cells"].sum() == source.n_cells
    for name in expected[:-1]:
        _, events, _, ranges = _flowio(tmp_path / "parts" / name)
        assert all(r > top for r, top in zip(ranges, events.max(axis=0)))
        parts.append(events)
    p = len(source.channel_names)
    both = np.concatenate(parts)
    key = np.lexsort((both[:, p], both[:, 0], both[:, 1]))  # rows back in one order: sample ids come from event_id
    whole_key = np.lexsort((whole[:, p], whole[:, 0], whole[:, 1]))
    np.testing.assert_array_equal(both[key], whole[whole_key])
    if by == "population":
        for name, pid in zip(expected, (0, 1, 2, -1)):
            assert (parts[expected.index(name)][:, -1] == pid).all()


def test_event_ids_beyond_float32_precision_are_refused(tmp_path, monkeypatch):
    from cytoauto_core.io import export
    from cytoauto_core.base.errors import CytoInputError

    ds = make_demo(2_000, seed=1)
    monkeypatch.setattr(export, "FLOAT32_EXACT", 1_000)
    with pytest.raises(CytoInputError, match=r"^'demo_bone_marrow' has a sample of more than 1,000 events"):
        write_labelled_fcs(tmp_path / "x.fcs", ds, _cells(ds.n_cells))
    assert not (tmp_path / "x.fcs").exists()
