"""The Map page's "Whole study" section for a working sample: every cell of the study placed on the shown map of the
working sample, as a background job (passes.place_cells, on the Dask cluster at $CYTOAUTO_DASK_SCHEDULER when set).
A FlowSOM fitted on the working sample's features gives each cell its SOM node; a study cell is placed at the mean
position of its nearest working-sample cells within that node (passes.MapPlacer), and the working sample's own cells
keep their positions exactly. The positions are kept memory-mapped in whole_study/map_<embedding key>.npy beside the
study, with a small JSON beside them (written last) saying what they are; the Results page's per-sample FCS files
take map_x/map_y from the most recent one (study_panel.whole_study_map)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import streamlit as st

from cytoauto_core.base.contracts import JobCancelled
from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.storage import atomic_write_json, read_json
from cytoauto_core.prep.transforms import TransformSpec
from cytoauto_core.study.passes import MapPlacer, place_cells
from cytoauto_core.tools.clustering import ClusteringParams, FlowSOM
from ui import state
from ui.maps import PREFIX
from ui.study_panel import connect_scheduler, scheduler_address, whole_study_map_folder
from ui.widgets import job_panel

FITTING = 0.2  # the share of the job's progress bar for the SOM; placing every cell takes the rest


def stem(map_name: str) -> str:
    """The file name (without suffix) of the whole-study positions on the stored map `map_name`."""
    return "map_" + map_name.removeprefix(PREFIX)


def _job_key(study_key: str) -> str:
    return f"whole-study-map-{study_key}"


def panel(key: str, dataset: Dataset, map_name: str, coords: np.ndarray, meta: dict) -> None:
    """Shown only when `dataset` is a study's working sample and `coords` its map `map_name`: a button placing every
    cell of the study on this map in the background, its progress, and a sentence once they are placed."""
    found = state.working_sample_of(key, dataset)
    if found is None:
        return
    sample, study = found
    x, spec = state.features(key, dataset)
    rows = np.asarray(sample.rows)
    if rows.shape[0] != dataset.n_cells or coords.shape[0] != dataset.n_cells or np.any(np.diff(rows) <= 0):
        return  # a sample without its stored study rows cannot be placed back in the study
    folder = whole_study_map_folder(sample.study_key)
    name = stem(map_name)
    st.subheader("Whole study")
    jobs = state.job_manager()
    job = jobs.get(_job_key(sample.study_key))
    if list(meta.get("features", spec.features)) != list(spec.features):
        st.caption("This map was made on other features than the ones now chosen on the Data page; compute it again "
                   "to place every cell of the study on it.")
    elif st.button("Place every cell of the study on this map", disabled=job is not None and job.running,
                   key="whole-study-map"):
        seed = int(meta.get("params", {}).get("seed", 0))
        job = jobs.start(_job_key(sample.study_key), "Placing the whole study on the map",
                         _work(study, spec, x, np.asarray(coords), rows, seed, folder, name, meta, scheduler_address()))
    job_panel(job)
    summary = read_json(folder / f"{name}.json")
    if summary is not None and (folder / f"{name}.npy").is_file():
        st.caption(f"Every one of the study's {summary['n_cells']:,} cells has a position on this map: placed by its "
                   "nearest working-sample cells within its SOM node.")


def _work(study: Dataset, spec: TransformSpec, x: np.ndarray, coords: np.ndarray, rows: np.ndarray, seed: int,
          folder: Path, name: str, meta: dict, scheduler: str | None):
    """The background job: earlier files of this map removed first (unlinked, so a reader keeps its copy), a SOM
    fitted on the working sample, every cell placed, the JSON last."""
    def work(progress, should_stop) -> float:
        started = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").unlink(missing_ok=True)
        (folder / f"{name}.npy").unlink(missing_ok=True)
        model = FlowSOM(ClusteringParams(seed=seed)).fit(x, lambda f, m: progress(FITTING * f, m), should_stop)
        if should_stop():
            raise JobCancelled()
        placer = MapPlacer.fit(np.asarray(x, np.float32), coords, model, rows)
        client = connect_scheduler(scheduler, progress) if scheduler else None
        try:
            place_cells(study, spec, placer, folder / f"{name}.npy", client,
                        lambda f, m: progress(FITTING + (1 - FITTING) * f, m), should_stop)
        finally:
            if client is not None:
                client.close()
        seconds = time.perf_counter() - started
        atomic_write_json(folder / f"{name}.json", {
            "what": "every study cell's position (float32 n_cells × 2) on a map of the working sample, placed by "
                    "its nearest working-sample cells within its SOM node; the sample's cells keep theirs",
            "map": name, "method": meta.get("method"), "description": meta.get("description"), "seed": seed,
            "n_cells": study.n_cells, "reference_cells": int(rows.size), "features": list(spec.features),
            "seconds": seconds, "finished": time.time()})
        return seconds
    return work
