"""Every FCS file in the shared data, exported with labels, reads back in flowio, FlowKit and our reader: every TEXT
keyword we wrote, the population legend and every event.

Normalisation: flowio (and FlowKit, which keeps flowio's dict) lower-cases keywords and deletes every '$' in the TEXT,
values included; our reader upper-cases keywords. The same is applied to what we meant to write before comparing.
"""
from __future__ import annotations

import json
from pathlib import Path

import flowio
import flowkit
import numpy as np
import pytest

from conftest import SHARED
from cytoauto_core.base.dataset import event_ids
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.io import fcs_writer, read_file
from cytoauto_core.io.export import write_labelled_fcs

EXPORTS = sorted([*SHARED.rglob("*.fcs"), *SHARED.rglob("*.lmd")])
NAMES = {0: "CD4/CD8 T cells", 1: "B cells", 2: "NK, ünïcode"}  # a '/' in a name, as in a path-like FILENAME


def test_every_shared_fcs_file_is_covered():
    assert len(EXPORTS) >= 60, f"only {len(EXPORTS)} FCS files under {SHARED}"


def _cells(n: int) -> LabelledCells:
    """Seeded labels (−1 unassigned and three named populations), confidence and a map for n cells."""
    rng = np.random.default_rng(n)
    return LabelledCells(rng.integers(-1, 3, n).astype(np.int32), dict(NAMES), rng.uniform(0, 1, n).astype(np.float32),
                         coords=rng.normal(0, 1, (n, 2)).astype(np.float32))


def _flowio_form(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The keywords as flowio and FlowKit report them: keys lower-case, every '$' removed."""
    form = {k.lower().replace("$", ""): v.replace("$", "") for k, v in pairs}
    assert len(form) == len(pairs), "two keywords we write would collapse into one in flowio"
    return form


@pytest.mark.parametrize("path", EXPORTS, ids=[str(p.relative_to(SHARED)) for p in EXPORTS])
def test_labelled_export_reads_back_in_flowio_flowkit_and_ours(path: Path, tmp_path, monkeypatch):
    source = read_file(path)
    cells = _cells(source.n_cells)
    written: list[list[tuple[str, str]]] = []
    real = fcs_writer.text_pairs
    monkeypatch.setattr(fcs_writer, "text_pairs", lambda *args: written.append(real(*args)) or written[-1])
    out = tmp_path / "labelled.fcs"
    write_labelled_fcs(out, source, cells)
    pairs = written[-1]  # the TEXT of the file, final offsets included
    assert all(k and v for k, v in pairs), "FCS forbids empty keywords and values"
    names = source.channel_names + ["event_id", "confidence", "map_x", "map_y", "population_id"]
    events = np.column_stack([source.events, event_ids(source.sample_ids), cells.confidence, cells.coords,
                              cells.population_id]).astype(np.float32)

    raw = flowio.FlowData(str(out))  # plain flowio, no leniency options
    assert raw.text == _flowio_form(pairs)
    assert raw.pnn_labels == names
    np.testing.assert_array_equal(raw.as_array(preprocess=False), events)
    assert json.loads(raw.text["cytoauto_populations"]) == {str(k): v for k, v in NAMES.items()}

    sample = flowkit.Sample(str(out))
    assert sample.get_metadata() == _flowio_form(pairs)
    assert sample.pnn_labels == names
    np.testing.assert_array_equal(sample.get_events(source="raw"), events)

    back = read_file(out)
    assert back.warnings == []
    assert back.metadata == {k.upper(): v for k, v in pairs}
    assert back.channel_names == names[:-1]  # population_id becomes the population annotation
    np.testing.assert_array_equal(back.events, events[:, :-1])
    assert (back.annotations["population"].astype(str).to_numpy() == cells.population_names()).all()
