"""Exports re-read with the project's reader and with plain flowio: appended channels and names intact."""
from __future__ import annotations

import io

import flowio
import numpy as np
import pandas as pd

from conftest import CORPUS
from cytoauto_core.demo import make_demo
from cytoauto_core.export import LabelledCells, abundance, csv_bytes, labelled_frame, write_labelled_fcs
from cytoauto_core.io import read_file


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
    assert frame.columns[: len(ds.channel_names)].tolist() == ds.channel_names
    assert {"population_id", "population", "confidence", "map_x", "map_y", "sample", "annotation_population"} <= set(frame.columns)
    assert (frame["population"].to_numpy() == cells.population_names()).all()
    assert (frame.loc[frame["population_id"] == -1, "population"] == "unassigned").all()
    np.testing.assert_allclose(frame["Pr141Di"], ds.events[:, 0], rtol=1e-6)


def test_abundance_percentages_per_sample():
    ids = np.array([0, 0, 1, -1, 1, 1])
    table = abundance(ids, {0: "a", 1: "b"}, np.array([0, 0, 0, 1, 1, 1]), ["s1", "s2"])
    s1 = table[table["sample"] == "s1"].set_index("population")
    assert s1.loc["a", "cells"] == 2 and abs(s1.loc["b", "percent"] - 100 / 3) < 1e-9
    s2 = table[table["sample"] == "s2"].set_index("population")
    assert s2.loc["unassigned", "cells"] == 1 and s2.loc["b", "cells"] == 2
