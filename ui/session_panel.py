"""The Data page's session panel: download the dataset's state as one file, or open one made here or elsewhere."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from cytoauto_core.base.dataset import Dataset
from cytoauto_core.store.session import export_session, import_session
from ui import state
from ui.results import SHIPPED_MODELS, load_result
from ui.text import literal
from ui.widgets import show_error

OPENED = "session-opened"  # the sentence saying what the last import restored, shown after the rerun
PREPARED = "session-prepared"  # (what the file holds, its bytes)


def _result_bundle(key: str) -> Path | None:
    """The folder of the model bundle behind the dataset's result, in the workspace or shipped with the app."""
    result = load_result(key)
    folder = None if result is None else result.meta.get("bundle_dir")
    for root in (state.workspace().models_dir, SHIPPED_MODELS):
        if folder and (root / folder / "bundle.json").is_file():
            return root / folder
    return None


def _made_from(key: str, dataset: Dataset) -> str:
    """What a session file holds, so one prepared before a later change (a label, a map, a setting) is not offered."""
    ws = state.workspace()
    clustering = state.cluster_store(key, dataset).current()
    labels = state.label_store(key, dataset).version()
    return json.dumps([key, labels, None if clustering is None else clustering.version, ws.list_arrays(key),
                       ws.load_settings(key)], sort_keys=True, default=str)


def session_panel(key: str, dataset: Dataset) -> None:
    with st.expander("Session: save or open settings, labels, maps, clustering and model as one file"):
        if message := st.session_state.pop(OPENED, None):
            st.success(literal(message))
        st.caption("A session file restores this state on another machine once the same data file is loaded there.")
        made_from = _made_from(key, dataset)
        if st.button("Prepare session file"):
            with st.spinner("Packing the session…"):
                st.session_state[PREPARED] = (made_from, export_session(state.workspace(), key, dataset,
                                                                        _result_bundle(key)))
        prepared = st.session_state.get(PREPARED)
        if prepared and prepared[0] == made_from:
            st.download_button("Download session (.zip)", prepared[1],
                               file_name=f"{Path(dataset.name).stem}_session.zip", mime="application/zip",
                               key="dl-session")
        upload = st.file_uploader("Open a session file (.zip)", type=["zip"], key="session-upload")
        if upload is not None and st.button("Open session", type="primary"):
            try:
                summary = import_session(state.workspace(), upload, upload.name)
            except Exception as exc:  # shown as one sentence
                show_error(exc, "Opening the session")
                return
            st.session_state.pop(PREPARED, None)
            st.session_state[OPENED] = (
                f"Opened the session of {summary.dataset_name}: {summary.populations} population(s), "
                f"{summary.labelled_cells:,} labelled cells, {summary.arrays} map(s)/result(s)"
                + (", the clustering" if summary.clustering else "")
                + (f" and the model bundle {summary.bundle}" if summary.bundle else "") + ".")
            state.select_dataset(summary.key)
            st.rerun()
