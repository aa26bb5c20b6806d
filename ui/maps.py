"""Map helpers shared by the Map, Label and Results pages: stored embeddings, colouring and drawn rows."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import streamlit as st

from cytoauto_core.base.dataset import NOT_A_POPULATION, UNKNOWN_ID, Dataset
from cytoauto_core.run.jobs import Job
from cytoauto_core.tools.embeddings import EmbeddingParams, embed, embedding_key, stratified_subsample
from ui import state
from ui.plots import UNKNOWN_CODE
from ui.widgets import job_panel

MAX_DRAWN = 100_000
PREFIX = "embedding-"


def stored_maps(key: str) -> dict[str, dict]:
    """Stored embeddings of dataset `key`: array name → metadata."""
    ws = state.workspace()
    out = {}
    for name in ws.list_arrays(key, PREFIX):
        found = ws.load_array(key, name)
        if found is not None:
            out[name] = found[1]
    return out


def start_embedding(key: str, dataset: Dataset, params: EmbeddingParams) -> Job | None:
    """Compute a map of every cell in the background and store it; None when the workspace already has it."""
    x, spec = state.features(key, dataset)
    name = PREFIX + embedding_key(key, spec.features, spec.to_dict(), params)
    if state.workspace().load_array(key, name) is not None:
        remember_map(key, name)
        return None

    def work(progress, should_stop):
        result = embed(x, params, progress=progress, should_stop=should_stop)
        state.workspace().save_array(key, name, result.coords, {
            "method": params.method, "description": result.description, "seconds": result.seconds,
            "params": asdict(params), "features": spec.features,
        })
        remember_map(key, name)
        return name

    return state.job_manager().start(job_key(key), f"{params.method.upper()} map", work)


def job_key(key: str) -> str:
    """The background job that computes maps of dataset `key`."""
    return f"embed-{key}"


def map_progress(key: str, meanwhile: str) -> bool:
    """While a map of dataset `key` is being computed, say so with the job's progress and what to do `meanwhile`
    (a page must not say there is no map then); returns whether one is."""
    job = state.job_manager().get(job_key(key))
    if job is None or not job.running:
        return False
    st.info(f"A map of this dataset is being computed (started on the **Map** page); it appears here once done. "
            f"{meanwhile}")
    job_panel(job)
    return True


def remember_map(key: str, name: str) -> None:
    ws = state.workspace()
    settings = ws.load_settings(key) or {}
    settings["map"] = name
    ws.save_settings(key, settings)


def map_picker(key: str, label: str = "Map") -> tuple[str, np.ndarray, dict] | None:
    """Let the user pick one of the stored maps (last used first); None when there is none yet."""
    maps = stored_maps(key)
    if not maps:
        return None
    names = list(maps)
    last = (state.workspace().load_settings(key) or {}).get("map")
    index = names.index(last) if last in names else len(names) - 1
    name = st.selectbox(label, names, index=index, format_func=lambda n: maps[n]["description"], key=f"pick-{label}")
    if name != last:
        remember_map(key, name)
    coords, meta = state.workspace().load_array(key, name)
    return name, coords, meta


@st.cache_data(max_entries=16, show_spinner=False)
def drawn_rows(key: str, n_cells: int, strata_name: str, _strata: np.ndarray | None) -> np.ndarray:
    """A stable, stratified subsample of at most MAX_DRAWN cells to draw (rare groups kept)."""
    return stratified_subsample(n_cells, MAX_DRAWN, _strata, seed=0)


def color_choices(dataset: Dataset, spec_features: list[str], extra: list[str] = ()) -> list[str]:
    """Everything a map can be coloured by: extras (labels, predictions), annotations, sample, markers."""
    markers = [f"marker: {m}" for m in dataset.feature_markers(spec_features)]
    annotations = [f"annotation: {c}" for c in dataset.annotations.columns]
    samples = ["sample"] if len(dataset.samples) > 1 else []
    return [*extra, *annotations, *samples, *markers]


def color_values(choice: str, dataset: Dataset, x: np.ndarray, spec_features: list[str]
                 ) -> tuple[np.ndarray | None, list[str] | None]:
    """Colour values for a choice from `color_choices`: (codes, categories) or (numbers, None)."""
    if choice.startswith("marker: "):
        markers = dataset.feature_markers(spec_features)
        return x[:, markers.index(choice[len("marker: "):])], None
    if choice == "sample":
        return dataset.sample_ids, list(dataset.samples)
    if choice.startswith("annotation: "):
        column = dataset.annotations[choice[len("annotation: "):]].astype(str)
        categories = sorted(c for c in column.unique() if c.lower() not in NOT_A_POPULATION)
        lookup = {c: i for i, c in enumerate(categories)}
        return column.map(lookup).fillna(-1).to_numpy(np.int32), categories
    return None, None


def hover_values(dataset: Dataset, x: np.ndarray, spec_features: list[str], rows: np.ndarray, top: int = 6
                 ) -> tuple[list[str], np.ndarray]:
    """What a map shows on hover: the first few markers' names and their transformed values in the drawn rows."""
    markers = dataset.feature_markers(spec_features)[:top]
    return markers, x[rows, :top]


def codes_for(ids: np.ndarray, ordered_ids: list[int]) -> np.ndarray:
    """Colour codes 0..k-1 for population ids in `ordered_ids` order; UNKNOWN_CODE (dark grey) for unknown cells,
    -1 (light grey) for anything else."""
    codes = np.where(np.asarray(ids) == UNKNOWN_ID, UNKNOWN_CODE, -1).astype(np.int32)
    for code, pid in enumerate(ordered_ids):
        codes[ids == pid] = code
    return codes
