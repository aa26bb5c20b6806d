"""Exports of a stored (memory-mapped) study sample by sample and chunk by chunk: the same files and tables as the
whole-dataset exporters, with memory bounded by a sample or a chunk."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import anndata
import flowio
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED
from cytoauto_core.base import chunks
from cytoauto_core.base.dataset import Dataset, make_channels
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.io.export import abundance, csv_bytes, labelled_frame, legend_frame
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.io import concat_datasets, read_file, read_files
from cytoauto_core.base.contracts import JobCancelled
from cytoauto_core.io.sample_exports import (CSV_CHUNK_ROWS, count_populations, sample_rows, write_csv_stream,
                                          write_sample_exports)
from cytoauto_core.store.workspace import Workspace

HIMC = SHARED / "devsuite" / "himc_ctrl_cytof" / "fcs"
NAMES = {0: "T cells", 1: "B cells", 2: "NK cells", 4: "rare"}


def _stored(tmp_path: Path, dataset: Dataset) -> Dataset:
    """`dataset` stored in a workspace and opened again: events memory-mapped, as the app holds a study."""
    workspace = Workspace(tmp_path / "workspace")
    stored = workspace.load_dataset(workspace.add_dataset(dataset))
    assert isinstance(stored.events, np.memmap)
    return stored


def _himc(tmp_path: Path) -> Dataset:
    """Three real CyTOF files (40, 190 and 480 events, 52 channels) as the samples of one stored dataset."""
    files = [next(HIMC.glob(f"*_HIMCctrl_{name}.fcs")) for name in ("Basophil", "pDCs", "mDCs")]
    return _stored(tmp_path, read_files(files))


def _demo_study(tmp_path: Path) -> Dataset:
    """Three demo samples with a ground-truth annotation column, stored."""
    return _stored(tmp_path, concat_datasets([s.dataset for s in make_demo_study(3, 3_000, seed=4)], "study"))


def _cells(tmp_path: Path, n: int, seed: int = 0) -> LabelledCells:
    """Results as the app will hold them: memory-mapped .npy files; ids -2 (unknown), -1 (unassigned), named ones
    and 3, an id without a name."""
    rng = np.random.default_rng(seed)
    arrays = {"ids": rng.integers(-2, 5, n).astype(np.int16), "confidence": rng.random(n, dtype=np.float32),
              "novelty": rng.random(n, dtype=np.float32), "coords": rng.normal(0, 3, (n, 2)).astype(np.float32)}
    for name, values in arrays.items():
        np.save(tmp_path / f"{name}.npy", values)
    mapped = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in arrays}
    return LabelledCells(mapped["ids"], dict(NAMES), mapped["confidence"], coords=mapped["coords"],
                         novelty=mapped["novelty"])


def _flowio(path: Path) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Channel names, events and lower-cased keywords as flowio (FlowJo's reading) sees them."""
    raw = flowio.FlowData(str(path))
    names = [raw.channels[i + 1]["pnn"] for i in range(raw.channel_count)]
    return names, raw.as_array(preprocess=False), {k.lower().lstrip("$"): v for k, v in raw.text.items()}


def test_per_sample_files_hold_each_samples_cells_and_results(tmp_path):
    ds = _himc(tmp_path)
    cells = _cells(tmp_path, ds.n_cells)
    written = write_sample_exports(tmp_path / "out", ds, cells, ("fcs", "csv", "h5ad"),
                                   maps={"X_umap": cells.coords})
    stems = ["02Feb18_Helios2_Plate3_Sample1_HIMCctrl_" + n for n in ("Basophil", "pDCs", "mDCs")]
    expected = [f"{stem}_labelled.{fmt}" for stem in stems for fmt in ("fcs", "csv", "h5ad")] + ["legend.csv"]
    assert [p.name for p in written] == expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written), "no temp file left"

    ids, conf = np.asarray(cells.population_id), np.asarray(cells.confidence)
    whole_csv = csv_bytes(labelled_frame(ds, cells)).splitlines(keepends=True)
    p = len(ds.channel_names)
    for sample, stem in enumerate(stems):
        rows = np.flatnonzero(ds.sample_ids == sample)
        names, events, text = _flowio(tmp_path / "out" / f"{stem}_labelled.fcs")
        assert names == ds.channel_names + ["event_id", "confidence", "novelty", "map_x", "map_y", "population_id"]
        np.testing.assert_array_equal(events[:, :p], ds.events[rows])
        np.testing.assert_array_equal(events[:, p], np.arange(len(rows)))
        np.testing.assert_array_equal(events[:, p + 1], conf[rows])
        np.testing.assert_array_equal(events[:, -1], ids[rows])
        assert json.loads(text["cytoauto_populations"])["4"] == "rare"
        again = read_file(tmp_path / "out" / f"{stem}_labelled.fcs")
        np.testing.assert_array_equal(again.events[:, :p], ds.events[rows])

        csv = (tmp_path / "out" / f"{stem}_labelled.csv").read_bytes().splitlines(keepends=True)
        assert csv == whole_csv[:1] + [whole_csv[1 + r] for r in rows], "the whole export's rows of this sample"

        h5ad = read_file(tmp_path / "out" / f"{stem}_labelled.h5ad")
        np.testing.assert_array_equal(h5ad.events[:, h5ad.channel_index(ds.channel_names)], ds.events[rows])
        obs = anndata.read_h5ad(tmp_path / "out" / f"{stem}_labelled.h5ad")
        assert obs.obs["sample"].cat.categories.tolist() == [ds.samples[sample]]
        np.testing.assert_array_equal(obs.obs["population_id"], ids[rows])
        np.testing.assert_array_equal(obs.obs["event_id"], np.arange(len(rows)))
        np.testing.assert_array_equal(obs.obsm["X_umap"], np.asarray(cells.coords)[rows])

    legend = pd.read_csv(tmp_path / "out" / "legend.csv")
    pd.testing.assert_frame_equal(legend, legend_frame(LabelledCells(ids, NAMES, novelty=conf)), check_dtype=False)


def test_interleaved_samples_are_gathered_and_names_made_unique(tmp_path):
    """Samples whose cells are not one run of rows are gathered; sample names that clash as file names get _2."""
    study = concat_datasets([s.dataset for s in make_demo_study(2, 2_000, seed=2)], "study")
    order = np.argsort(np.arange(study.n_cells) % 7, kind="stable")  # seven interleaved runs of each sample
    ds = _stored(tmp_path, replace(study, events=study.events[order], sample_ids=study.sample_ids[order],
                                   annotations=study.annotations.iloc[order].reset_index(drop=True)))
    ds = replace(ds, samples=["tube 1.fcs", "tube_1.fcs"])
    found = sample_rows(ds.sample_ids, 2, chunk_rows=500)
    for sample in (0, 1):
        np.testing.assert_array_equal(found[sample], np.flatnonzero(ds.sample_ids == sample))
    cells = _cells(tmp_path, ds.n_cells)
    written = write_sample_exports(tmp_path / "out", ds, cells, ("fcs",))
    assert [p.name for p in written] == ["tube_1_labelled.fcs", "tube_1_2_labelled.fcs", "legend.csv"]
    p = len(ds.channel_names)
    for sample, path in enumerate(written[:2]):
        rows = np.flatnonzero(ds.sample_ids == sample)
        _, events, _ = _flowio(path)
        np.testing.assert_array_equal(events[:, :p], ds.events[rows])
        np.testing.assert_array_equal(events[:, -1], np.asarray(cells.population_id)[rows])


def test_contiguous_samples_are_read_as_one_run_each(tmp_path):
    ids = np.repeat(np.array([2, 0, 1], np.int32), [5, 700_000, 3])
    assert sample_rows(ids, 4, chunk_rows=1_000) == {2: slice(0, 5), 0: slice(5, 700_005), 1: slice(700_005, 700_008)}


def test_cancel_stops_between_samples_with_no_file_half_written(tmp_path):
    ds = _himc(tmp_path)
    asked, reports = [], []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) > 1

    with pytest.raises(JobCancelled):
        write_sample_exports(tmp_path / "out", ds, _cells(tmp_path, ds.n_cells), ("fcs", "h5ad"),
                             progress=lambda f, m: reports.append((f, m)), should_stop=should_stop)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "02Feb18_Helios2_Plate3_Sample1_HIMCctrl_Basophil_labelled.fcs",
        "02Feb18_Helios2_Plate3_Sample1_HIMCctrl_Basophil_labelled.h5ad"]
    assert reports == [(0.0, "exporting 02Feb18_Helios2_Plate3_Sample1_HIMCctrl_Basophil.fcs (1 of 3 samples)")]


@pytest.mark.parametrize("chunk_rows", [997, CSV_CHUNK_ROWS])
def test_streamed_csv_is_byte_identical_to_the_whole_export(tmp_path, chunk_rows):
    ds = _demo_study(tmp_path)
    cells = _cells(tmp_path, ds.n_cells)
    assert "population" in ds.annotations.columns
    path = write_csv_stream(tmp_path / "all.csv", ds, cells, chunk_rows=chunk_rows)
    assert path.read_bytes() == csv_bytes(labelled_frame(ds, cells))
    fcs = _himc(tmp_path / "himc")  # no annotations, no novelty or map
    n = fcs.n_cells
    bare = LabelledCells(np.asarray(cells.population_id)[:n], NAMES, np.asarray(cells.confidence)[:n])
    assert write_csv_stream(tmp_path / "himc.csv", fcs, bare, 100).read_bytes() == csv_bytes(labelled_frame(fcs, bare))


def test_counts_equal_the_abundance_table(tmp_path):
    ds = _demo_study(tmp_path)
    ds = replace(ds, samples=["zeta.fcs", "alpha.fcs", "mid.fcs"])  # table order is by name, not by sample id
    cells = _cells(tmp_path, ds.n_cells, seed=3)
    ids = np.asarray(cells.population_id).copy()
    ids[:40] = 9  # beyond every name: unassigned, as names_of says
    np.save(tmp_path / "ids9.npy", ids)
    mapped = np.load(tmp_path / "ids9.npy", mmap_mode="r")
    for names in (NAMES, {}, {0: "T cells", 1: "T cells"}):
        got = count_populations(mapped, names, ds.sample_ids, ds.samples, chunk_rows=1_234)
        pd.testing.assert_frame_equal(got, abundance(ids, names, ds.sample_ids, ds.samples), check_exact=True)
    assert count_populations(mapped, NAMES, ds.sample_ids, ds.samples)["cells"].sum() == ds.n_cells


MEMORY_CELLS, MEMORY_CHANNELS = 3_000_000, 40  # 480 MB (458 MiB) of float32 events
SAMPLE_CELLS = (400_000, 600_000, 500_000, 450_000, 550_000, 500_000)  # the largest: 96 MB of events
MEMORY_SCRIPT = """
import sys, time
from pathlib import Path


def peak_mb():
    # this process's own peak RSS: VmHWM starts afresh at exec, while ru_maxrss keeps the parent's peak (from fork)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) // 1024


import numpy as np
from cytoauto_core.io.export import LabelledCells
from cytoauto_core.io.sample_exports import count_populations, write_csv_stream, write_sample_exports
from cytoauto_core.store.workspace import Workspace

root, key, arrays = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
imported, started = peak_mb(), time.perf_counter()
ds = Workspace(root).load_dataset(key)
mapped = {name: np.load(arrays / f"{name}.npy", mmap_mode="r") for name in ("ids", "confidence", "novelty", "coords")}
cells = LabelledCells(mapped["ids"], {0: "T cells", 1: "B cells", 2: "NK cells", 4: "rare"}, mapped["confidence"],
                      coords=mapped["coords"], novelty=mapped["novelty"])
table = count_populations(cells.population_id, cells.names, ds.sample_ids, ds.samples)
counted, counts_s = peak_mb(), time.perf_counter() - started
write_csv_stream(root / "out" / "all.csv", ds, cells)
csv, csv_s = peak_mb(), time.perf_counter() - started - counts_s
write_sample_exports(root / "out", ds, cells, ("fcs",))
print(imported, counted, csv, peak_mb(), int(table["cells"].sum()), f"{counts_s:.1f}", f"{csv_s:.1f}",
      f"{time.perf_counter() - started - counts_s - csv_s:.1f}")
"""


def _big_study(tmp_path: Path) -> tuple[Path, str]:
    """A stored study of MEMORY_CELLS × MEMORY_CHANNELS in six samples (events written in chunks), and its results as
    .npy files."""
    rng = np.random.default_rng(0)
    appender = chunks.RowAppender(tmp_path / "events.npy", (MEMORY_CHANNELS,))
    for start, stop in chunks.row_ranges(MEMORY_CELLS):
        appender.append(rng.gamma(2.0, 50.0, (stop - start, MEMORY_CHANNELS)).astype(np.float32))
    appender.close()
    events = np.load(tmp_path / "events.npy", mmap_mode="r")
    channels = [f"Ch{i}" for i in range(MEMORY_CHANNELS)]
    sample_ids = np.repeat(np.arange(len(SAMPLE_CELLS), dtype=np.int32), SAMPLE_CELLS)
    ds = Dataset(events=events, channels=make_channels(channels, channels),
                 samples=[f"donor_{i}.fcs" for i in range(len(SAMPLE_CELLS))], sample_ids=sample_ids, name="big")
    key = Workspace(tmp_path / "workspace").add_dataset(ds)
    (tmp_path / "events.npy").unlink()
    np.save(tmp_path / "ids.npy", rng.integers(-2, 5, MEMORY_CELLS).astype(np.int16))
    for name, shape in (("confidence", (MEMORY_CELLS,)), ("novelty", (MEMORY_CELLS,)), ("coords", (MEMORY_CELLS, 2))):
        np.save(tmp_path / f"{name}.npy", rng.random(shape, dtype=np.float32))
    return tmp_path / "workspace", key


def test_exports_of_a_big_stored_study_stay_in_bounded_memory(tmp_path):
    """Counts, the study CSV and one FCS per sample of 3 M stored cells, in a fresh process: its peak RSS beyond its
    imports stays under 0.6 × the events' 458 MiB (275 MiB). Measured on the 2-core dev box: imports 103 MiB, loading
    and counts 143, the CSV (65,536-row chunks) 210, the FCS files 302 (the largest sample's 92 MiB of events, its
    result channels and the writer's buffers, on top of what the CSV left with the allocators): ~200 beyond the
    imports. The whole-dataset exporters on the same study peak at 725 MiB (FCS), 431 (abundance), 2.6 GiB (CSV)."""
    root, key = _big_study(tmp_path)
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(root), key, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    imported, after_counts, after_csv, peak, counted, *seconds = done.stdout.split()
    assert int(counted) == MEMORY_CELLS
    assert len(list((root / "out").glob("*_labelled.fcs"))) == len(SAMPLE_CELLS)
    print(f"peak RSS (MB): imports {imported}, counts {after_counts}, CSV {after_csv}, FCS {peak}; seconds {seconds}")
    events_mb = MEMORY_CELLS * MEMORY_CHANNELS * 4 / 2 ** 20
    assert int(peak) - int(imported) < 0.6 * events_mb, done.stdout
