"""The Results page's "Whole study" section for a working sample: the applied model on every cell of the study, as a
background job streamed chunk by chunk (passes.predict_cells, on a Dask cluster when $CYTOAUTO_DASK_SCHEDULER names
one), its exact counts per sample (also what the Compare page counts: compare_counts), and one labelled FCS file per
sample (sample_exports)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import NOT_CALLED, Dataset
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.base.storage import atomic_write_json, read_json
from cytoauto_core.io.export import csv_bytes
from cytoauto_core.io.sample_exports import LEGEND_NAME, write_sample_exports
from cytoauto_core.study import large_study
from cytoauto_core.study.abundance import CountTable
from cytoauto_core.study.passes import predict_cells
from cytoauto_core.study.samples import SAMPLE
from ui import state
from ui.results import SHIPPED_MODELS, StoredResult, rejection_text
from ui.text import literal
from ui.widgets import job_panel

SCHEDULER_ENV = "CYTOAUTO_DASK_SCHEDULER"  # a Dask scheduler's address: the whole-study pass runs on its workers
TRAINED_ON_SAMPLE = "Trained on the working sample; apply it to every cell of the study on the Results page."
SUMMARY = "summary.json"  # a finished whole-study run: what made it and its counts (absent while one runs)
EXPORTED = "export.json"  # a finished per-sample FCS export: its files
FCS_FOLDER = "fcs"
RESULT_FILES = ("population_id.npy", "confidence.npy", "novelty.npy")
# A download button reads its file into the server's memory when clicked (Streamlit 1.67 keeps it there until the
# page's next run); larger files are left on the server, where the page says they are.
MAX_DOWNLOAD_BYTES = 1 << 30


def train_note(dataset: Dataset) -> None:
    """The Train page's sentence on a working sample."""
    if large_study.study_of(state.workspace(), dataset) is not None:
        st.caption(TRAINED_ON_SAMPLE)


def folder_of(study_key: str, bundle_hash: str) -> Path:
    """Where the whole-study results of one model bundle are kept, beside the study."""
    return state.workspace().dataset_dir(study_key) / "whole_study" / bundle_hash


def bundle_folder(result: StoredResult) -> Path | None:
    """The folder of the bundle behind the result (workspace or shipped models), or None when it is gone."""
    name = result.meta.get("bundle_dir")
    for root in (state.workspace().models_dir, SHIPPED_MODELS):
        if name and (root / name / "bundle.json").is_file():
            return root / name
    return None


def counts_table(summary: dict) -> pd.DataFrame:
    """A finished run's exact counts: one row per sample and population, with cells and percent of the sample."""
    wide = pd.DataFrame(summary["counts"], index=pd.Index(summary["samples"], name="sample"),
                        columns=pd.Index(summary["populations"], name="population"))
    long = wide.stack().rename("cells").reset_index()
    totals = long.groupby("sample", sort=False)["cells"].transform("sum")
    long["percent"] = np.where(totals > 0, 100 * long["cells"] / totals.where(totals > 0, 1), 0.0)
    return long


def panel(key: str, dataset: Dataset, result: StoredResult, threshold: float, rejection: float) -> None:
    """The whole-study section, shown only when `dataset` is a study's working sample."""
    found = state.working_sample_of(key, dataset)
    if found is None:
        return
    sample, study = found
    study_key = sample.study_key
    meta = result.meta
    st.subheader("Whole study")
    bundle = bundle_folder(result)
    if bundle is None:
        st.caption("The applied model's bundle is no longer in the workspace, so it cannot be applied to the whole "
                   "study: train again on the **Train** page.")
        return
    scheduler = scheduler_address()
    where = f"on the Dask cluster at {literal(scheduler)}" if scheduler else "in the background on this server"
    st.caption(f"The model **{literal(meta['model'])}** (bundle {literal(meta['bundle_hash'][:12])}) labels every one "
               f"of the study's {study.n_cells:,} cells in {len(study.samples)} samples, chunk by chunk {where}, at "
               f"confidence threshold {threshold:.2f} and unknown cells {rejection_text(rejection)}. The counts "
               "below are exact, not estimated from the working sample.")
    folder = folder_of(study_key, meta["bundle_hash"])
    jobs = state.job_manager()
    predict_key, export_key = f"whole-study-{study_key}", f"whole-study-fcs-{study_key}"
    predicting, exporting = jobs.get(predict_key), jobs.get(export_key)
    busy = any(job is not None and job.running for job in (predicting, exporting))
    if st.button("Label every cell of the study", type="primary", disabled=busy, key="whole-study-run") \
            and not _refused(exporting):
        names = result.names
        novel = result.novelty is not None
        work = _predict_work(study, bundle, folder, threshold, rejection if novel else None, scheduler, {
            "model": meta["model"], "bundle_hash": meta["bundle_hash"], "threshold": threshold,
            "rejection": rejection, "class_ids": list(names), "class_names": list(names.values())})
        predicting = jobs.start(predict_key, "Labelling the whole study", work)
    job_panel(predicting)

    summary = read_json(folder / SUMMARY)
    if summary is None:
        return
    if (summary["threshold"], summary["rejection"]) != (threshold, rejection):
        st.warning(f"These counts were made at confidence threshold {summary['threshold']:.2f} and unknown cells "
                   f"{rejection_text(summary['rejection'])}, not at the settings above: label every cell again to "
                   "update them.")
    table = counts_table(summary)
    cells = table.pivot(index="sample", columns="population", values="cells").loc[summary["samples"],
                                                                                  summary["populations"]]
    shares = table.pivot(index="sample", columns="population", values="percent").loc[cells.index, cells.columns]
    by_count, by_share = st.tabs(["Cells", "% of sample"])
    total = "total" if "total" not in cells.columns else "all cells of the sample"
    by_count.dataframe(cells.assign(**{total: cells.sum(axis=1)}), width="stretch",
                       column_config={c: st.column_config.NumberColumn(format="%d") for c in [*cells.columns, total]})
    by_share.dataframe(shares, width="stretch",
                       column_config={c: st.column_config.NumberColumn(format="%.2f") for c in shares.columns})
    st.caption(f"{int(table['cells'].sum()):,} cells labelled in {summary['seconds']:.1f} s: one row per sample, "
               "every cell counted once (unassigned: below the confidence threshold; unknown: unlike every named "
               "population).")
    stem = Path(study.name).stem
    st.download_button("Download the counts per sample (CSV)", csv_bytes(table), file_name=f"{stem}_counts.csv",
                       mime="text/csv", key="whole-study-counts-csv")

    out = folder / FCS_FOLDER
    placed = whole_study_map(study_key)
    if placed is not None:
        st.caption(f"The FCS files also get map_x/map_y: every cell's position on the most recent map the **Map** "
                   f"page placed the whole study on ({literal(str(placed[1].get('description')))}).")
    if st.button("Write per-sample FCS files", disabled=busy, key="whole-study-fcs") and not _refused(predicting):
        colors = {p.id: p.color for p in state.label_store(key, dataset).populations()}
        exporting = jobs.start(export_key, "Writing per-sample FCS files",
                               _export_work(study, folder, summary, colors, None if placed is None else placed[0]))
    job_panel(exporting)
    _downloads(out)


def whole_study_summary(dataset: Dataset, result: StoredResult | None) -> dict | None:
    """The finished Whole study run of the model behind `result` (its summary.json) when `dataset` is a study's
    working sample; None otherwise or before such a run."""
    study_key = large_study.study_of(state.workspace(), dataset)
    if study_key is None or result is None or not result.meta.get("bundle_hash"):
        return None
    return read_json(folder_of(study_key, result.meta["bundle_hash"]) / SUMMARY)


def compare_counts(dataset: Dataset, result: StoredResult, threshold: float) -> tuple[CountTable | None, str | None]:
    """For the Compare page: the exact counts of every cell of the study when `dataset` is a working sample whose
    model has a Whole study run at `threshold`, with the sentence saying so; else (None, the sentence saying the
    counts are the working sample's), or (None, None) for any other dataset."""
    if large_study.study_of(state.workspace(), dataset) is None:
        return None, None
    summary = whole_study_summary(dataset, result)
    model = literal(result.meta.get("model", "the model"))
    sample_counts = f"The counts below are the working sample's ({dataset.n_cells:,} cells drawn across samples)"
    if summary is None:
        return None, (f"{sample_counts} until **Whole study** labels every cell of the study with **{model}** on the "
                      "**Results** page.")
    if abs(summary["threshold"] - threshold) > 1e-6:
        return None, (f"{sample_counts}: the whole-study counts of **{model}** were made at confidence threshold "
                      f"{summary['threshold']:.2f}, not {threshold:.2f}; set it back, or label every cell again on the "
                      "**Results** page at this threshold.")
    table = study_count_table(summary, dataset.samples)
    if table is None:
        return None, f"{sample_counts}: the whole-study result of **{model}** names other samples."
    return table, (f"Counts of every cell of the study (whole-study result of **{model}**): "
                   f"{int(table.totals.sum()):,} cells in {len(table.totals)} samples, at confidence threshold "
                   f"{summary['threshold']:.2f} and unknown cells {rejection_text(summary['rejection'])}.")


def study_count_table(summary: dict, samples: list[str]) -> CountTable | None:
    """A Whole study run's counts as the Compare page counts (named populations; totals of all cells, unassigned and
    unknown included), or None when it names other samples than `samples`."""
    if list(summary["samples"]) != list(samples):
        return None
    names = {int(i): str(n) for i, n in zip(summary["class_ids"], summary["class_names"])}
    codes = sorted(set(names) | set(NOT_CALLED))  # predict_cells' columns, in this order
    wide = np.asarray(summary["counts"], np.int64).reshape(len(samples), len(codes))
    named = [k for k, code in enumerate(codes) if code in names]
    index = pd.Index(samples, name=SAMPLE)
    return CountTable(pd.DataFrame(wide[:, named], index=index, columns=[names[codes[k]] for k in named]),
                      pd.Series(wide.sum(axis=1), index=index, name="total"))


def _refused(other) -> bool:
    """Whether the other whole-study job is running (the buttons were drawn before it started): one writes what the
    other reads, so they never run together."""
    if other is not None and other.running:
        st.warning(f"{other.title} is still running: wait for it to finish or press its Cancel first.")
        return True
    return False


def _predict_work(study: Dataset, bundle: Path, folder: Path, threshold: float, rejection: float | None,
                  scheduler: str | None, made_from: dict):
    """The background job labelling every cell: earlier results of this bundle are removed first (unlinked, so a
    reader still holding them keeps its copy), the summary is written last."""
    def work(progress, should_stop) -> float:
        client = connect_scheduler(scheduler, progress) if scheduler else None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / SUMMARY).unlink(missing_ok=True)
            shutil.rmtree(folder / FCS_FOLDER, ignore_errors=True)
            for name in RESULT_FILES:
                (folder / name).unlink(missing_ok=True)
            prediction = predict_cells(study, bundle, folder, threshold, rejection, client, progress, should_stop)
        finally:
            if client is not None:
                client.close()
        counts = prediction.counts
        atomic_write_json(folder / SUMMARY, {
            **made_from, "n_cells": study.n_cells, "seconds": prediction.seconds, "samples": list(counts.index),
            "populations": [str(c) for c in counts.columns], "counts": counts.to_numpy().tolist()})
        return prediction.seconds
    return work


def scheduler_address() -> str | None:
    """The Dask scheduler the whole-study passes run on ($CYTOAUTO_DASK_SCHEDULER), or None to run them here."""
    return os.environ.get(SCHEDULER_ENV, "").strip() or None


def connect_scheduler(scheduler: str, progress):
    """A client of the Dask scheduler at `scheduler`, or one sentence saying it cannot be reached."""
    from distributed import Client

    progress(0.0, f"connecting to the Dask scheduler at {scheduler}")
    try:
        return Client(scheduler)
    except (OSError, TimeoutError) as exc:
        raise CytoInputError(f"The Dask scheduler at {scheduler} (${SCHEDULER_ENV}) cannot be reached: {exc}") from exc


def whole_study_map_folder(study_key: str) -> Path:
    """Where the study's whole-study map positions are kept (ui/study_map.py writes them)."""
    return state.workspace().dataset_dir(study_key) / "whole_study"


def whole_study_map(study_key: str) -> tuple[Path, dict] | None:
    """The most recently finished whole-study map positions (map_<key>.npy, n_cells × 2) and their JSON, or None."""
    folder = whole_study_map_folder(study_key)
    found = [(path.with_suffix(".npy"), summary) for path in sorted(folder.glob("map_*.json"))
             if (summary := read_json(path)) is not None and path.with_suffix(".npy").is_file()]
    return max(found, key=lambda f: f[1].get("finished", 0), default=None)


def _export_work(study: Dataset, folder: Path, summary: dict, colors: dict[int, str], coords: Path | None = None):
    """The background job writing one labelled FCS file per sample from the memory-mapped per-cell results (and the
    map positions at `coords`, when given, as map_x/map_y)."""
    def work(progress, should_stop) -> int:
        out = folder / FCS_FOLDER
        (out / EXPORTED).unlink(missing_ok=True)
        novelty = folder / "novelty.npy"
        cells = LabelledCells(np.load(folder / "population_id.npy", mmap_mode="r"),
                              {int(i): str(n) for i, n in zip(summary["class_ids"], summary["class_names"])},
                              np.load(folder / "confidence.npy", mmap_mode="r"),
                              novelty=np.load(novelty, mmap_mode="r") if novelty.is_file() else None,
                              coords=np.load(coords, mmap_mode="r") if coords is not None else None)
        written = write_sample_exports(out, study, cells, ("fcs",), progress=progress, should_stop=should_stop,
                                       colors=colors)
        atomic_write_json(out / EXPORTED, {"files": [p.name for p in written]})
        return len(written)
    return work


def _downloads(out: Path) -> None:
    """One download button per written file; each is read from disk only when its button is clicked."""
    exported = read_json(out / EXPORTED)
    if exported is None:
        return
    files = [out / name for name in exported["files"] if (out / name).is_file()]
    st.caption(f"Written on the server in {literal(str(out))}. Each file is read only when its button is pressed; "
               f"files over {MAX_DOWNLOAD_BYTES >> 30} GB are left there to copy.")
    columns = st.columns(3)
    for k, path in enumerate(sorted(files, key=lambda p: (p.name == LEGEND_NAME, p.name))):
        size = path.stat().st_size
        label = f"{path.name} ({size / 1e6:,.1f} MB)"
        column = columns[k % 3]
        if size > MAX_DOWNLOAD_BYTES:
            column.caption(f"{literal(label)}: on the server only")
            continue
        column.download_button(literal(label), _reader(path), file_name=path.name,
                               mime="text/csv" if path.suffix == ".csv" else "application/octet-stream",
                               key=f"whole-study-file-{path.name}", on_click="ignore")


def _reader(path: Path):
    """The file's bytes, read when the download is asked for."""
    return lambda: path.read_bytes()
