"""The Cluster page's "Whole study" section for a working sample: FlowSOM fitted on a stratified subsample of the
study and every cell of the study assigned, as a background job (large_study.cluster_study; on the Dask cluster at
$CYTOAUTO_DASK_SCHEDULER when set), with its exact cells per cluster per sample. The per-cell clusters are kept
memory-mapped in whole_study/clusters_<k>_<seed>.npy beside the study, and their counts in a small JSON beside them
(written last), so a reopened page shows them without recounting."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.base.contracts import JobCancelled
from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.storage import atomic_write_json, read_json
from cytoauto_core.io.export import csv_bytes
from cytoauto_core.prep.transforms import TransformSpec
from cytoauto_core.study import large_study
from cytoauto_core.study.passes import count_per_sample
from cytoauto_core.tools.clustering import ClusteringParams
from ui import state
from ui.study_panel import connect_scheduler, counts_table, scheduler_address
from ui.text import literal
from ui.widgets import job_panel

CLUSTERING = 0.95  # the share of the job's progress bar for clustering; counting each cluster's cells takes the rest


def stem(params: ClusteringParams) -> str:
    """The file name (without suffix) of a whole-study clustering: clusters_<k>_<seed>."""
    return f"clusters_{params.n_clusters}_{params.seed}"


def folder_of(study_key: str) -> Path:
    """Where the study's whole-study results are kept."""
    return state.workspace().dataset_dir(study_key) / "whole_study"


def _job_key(study_key: str) -> str:
    return f"whole-study-clusters-{study_key}"


def submit_button(dataset: Dataset) -> bool:
    """The Cluster form's second button, drawn only when `dataset` is a study's working sample (so it submits the
    form's number of clusters and seed): whether it was pressed."""
    study_key = large_study.study_of(state.workspace(), dataset)
    if study_key is None:
        return False
    job = state.job_manager().get(_job_key(study_key))
    return st.form_submit_button("Cluster every cell of the study", disabled=job is not None and job.running)


def panel(key: str, dataset: Dataset, spec: TransformSpec, n_clusters: int, seed: int, pressed: bool) -> None:
    """The section, shown only when `dataset` is a study's working sample: when `pressed` (submit_button), clusters
    every cell of the study into the page's number of clusters with its seed as a background job; shows its
    progress and the finished clusterings' counts."""
    found = state.working_sample_of(key, dataset)
    if found is None:
        return
    sample, study = found
    folder = folder_of(sample.study_key)
    params = ClusteringParams(n_clusters=n_clusters, seed=seed)
    scheduler = scheduler_address()
    where = f"on the Dask cluster at {literal(scheduler)}" if scheduler else "in the background on this server"
    st.subheader("Whole study")
    st.caption(f"**Cluster every cell of the study** clusters each of the study's {study.n_cells:,} cells in "
               f"{len(study.samples)} samples into the number of clusters above, with its seed, chunk by chunk "
               f"{where}, and counts each cluster's cells in every sample exactly.")
    jobs = state.job_manager()
    job = jobs.get(_job_key(sample.study_key))
    if pressed:
        job = jobs.start(_job_key(sample.study_key), "Clustering the whole study",
                         _work(study, spec, params, folder, scheduler))
    job_panel(job)
    _show(folder, stem(params), list(spec.features), Path(study.name).stem)


def _work(study: Dataset, spec: TransformSpec, params: ClusteringParams, folder: Path, scheduler: str | None):
    """The background job: earlier files of this clustering removed first (unlinked, so a reader keeps its copy),
    every cell clustered, its counts per sample counted chunk by chunk from the written clusters, the JSON last."""
    def work(progress, should_stop) -> float:
        started = time.perf_counter()
        name = stem(params)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").unlink(missing_ok=True)
        (folder / f"{name}.npy").unlink(missing_ok=True)
        client = connect_scheduler(scheduler, progress) if scheduler else None
        try:
            model, clusters = large_study.cluster_study(study, spec, params, folder / f"{name}.npy", client,
                                                        lambda f, m: progress(CLUSTERING * f, m), should_stop)
        finally:
            if client is not None:
                client.close()
        if should_stop():
            raise JobCancelled()
        progress(CLUSTERING, "counting each cluster's cells in every sample")
        codes = sorted(int(c) for c in np.unique(model.node_clusters))
        counts = count_per_sample(clusters, study.sample_ids, len(study.samples), codes)
        seconds = time.perf_counter() - started
        atomic_write_json(folder / f"{name}.json", {
            "n_clusters": params.n_clusters, "seed": params.seed, "max_fit_cells": params.max_fit_cells,
            "n_cells": study.n_cells, "features": list(spec.features), "seconds": seconds, "finished": time.time(),
            "samples": list(study.samples), "clusters": [f"C{c + 1}" for c in codes], "counts": counts.tolist()})
        return seconds
    return work


def _show(folder: Path, wanted: str, features: list[str], stem_name: str) -> None:
    """The finished whole-study clusterings' counts: the page's number and seed when made, else the latest, with a
    choice among them when there are several."""
    found = {path.stem: summary for path in sorted(folder.glob("clusters_*.json"))
             if (summary := read_json(path)) is not None}
    if not found:
        return
    names = sorted(found, key=lambda n: (found[n]["n_clusters"], found[n]["seed"]))
    default = wanted if wanted in found else max(found, key=lambda n: found[n].get("finished", 0))
    name = default if len(names) == 1 else st.selectbox(
        "Whole-study clustering", names, index=names.index(default),
        format_func=lambda n: f"{found[n]['n_clusters']} clusters, seed {found[n]['seed']}")
    summary = found[name]
    if summary["features"] != features:
        st.warning("This whole-study clustering was made on other features than the ones now chosen on the Data "
                   "page; cluster every cell again to use them.")
    fit = summary["max_fit_cells"]
    fitted = (f"a stratified subsample of {fit:,} cells across samples" if summary["n_cells"] > fit
              else f"all of the study's {summary['n_cells']:,} cells")
    st.caption(f"{summary['n_clusters']} clusters (seed {summary['seed']}) fitted on {fitted} and every one of the "
               f"study's {summary['n_cells']:,} cells then assigned to its nearest SOM node's cluster, in "
               f"{summary['seconds']:.1f} s: the counts below are exact. Fitted anew and numbered by size (C1 "
               "largest), they need not match the working sample's clusters on this page.")
    long = counts_table({**summary, "populations": summary["clusters"]}).rename(columns={"population": "cluster"})
    cells = pd.DataFrame(summary["counts"], index=pd.Index(summary["samples"], name="sample"),
                         columns=pd.Index(summary["clusters"], name="cluster"))
    shares = long.pivot(index="sample", columns="cluster", values="percent").loc[cells.index, cells.columns]
    by_count, by_share = st.tabs(["Cells per cluster", "% of sample"])
    by_count.dataframe(cells.assign(total=cells.sum(axis=1)), width="stretch",
                       column_config={c: st.column_config.NumberColumn(format="%d") for c in [*cells.columns, "total"]})
    by_share.dataframe(shares, width="stretch",
                       column_config={c: st.column_config.NumberColumn(format="%.2f") for c in shares.columns})
    st.download_button("Download the cells per cluster per sample (CSV)", csv_bytes(long),
                       file_name=f"{stem_name}_{name}.csv", mime="text/csv", key="whole-study-clusters-csv")
