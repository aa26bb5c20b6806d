"""The Data page's session panel: download the dataset's state as one file, or open one made here or elsewhere."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from cytoauto_core.dataset import Dataset
from cytoauto_core.session import export_session, import_session
from ui import state
from ui.results import SHIPPED_MODELS, load_result
from ui.widgets import show_error

OPENED = "session-opened"  # the sentence saying what the last import restored, shown after the rerun


def _result_bundle(key: str) -> Path | None:
    """The folder of the model bundle behind the dataset's result, in the workspace or shipped with the app."""
    result = load_result(key)
    folder = None if result is None else result.meta.get("bundle_dir")
    for root in (state.workspace().models_dir, SHIPPED_MODELS):
        if folder and (root / folder / "bundle.json").is_file():
            return root / folder
    return None


def session_panel(key: str, dataset: Dataset) -> None:
    with st.expander("Session: save or open settings, labels, maps, clustering and model as one file"):
        if message := st.session_state.pop(OPENED, None):
            st.success(message)
        st.caption("A session file restores this state on another machine once the same data file is loaded there.")
        if st.button("Prepare session file"):
            with st.spinner("Packing the session…"):
                st.session_state[f"session-file-{key}"] = export_session(
                    state.workspace(), key, dataset, _result_bundle(key))
        if data := st.session_state.get(f"session-file-{key}"):
            st.download_button("Download session (.zip)", data, file_name=f"{Path(dataset.name).stem}_session.zip",
                               mime="application/zip", key="dl-session")
        upload = st.file_uploader("Open a session file (.zip)", type=["zip"], key="session-upload")
        if upload is not None and st.button("Open session", type="primary"):
            try:
                summary = import_session(state.workspace(), upload, upload.name)
            except Exception as exc:  # shown as one sentence
                show_error(exc, "Opening the session")
                return
            st.session_state.pop(f"session-file-{key}", None)
            st.session_state[OPENED] = (
                f"Opened the session of {summary.dataset_name}: {summary.populations} population(s), "
                f"{summary.labelled_cells:,} labelled cells, {summary.arrays} map(s)/result(s)"
                + (", the clustering" if summary.clustering else "")
                + (f" and the model bundle {summary.bundle}" if summary.bundle else "") + ".")
            state.select_dataset(summary.key)
            st.rerun()
