"""Data page: choose, upload or import a dataset, pick feature channels and the transform, see a summary."""
from functools import partial

import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import Dataset
from cytoauto_core.prep.transforms import (COFACTOR_FLOW, COFACTOR_MASS, ScaleGuess, TransformSpec, UntickedChannel,
                                           detect_scale, unticked_channels)
from cytoauto_core.store.workspace import DatasetRecord
from ui import state
from ui.cofactors import cofactor_panel
from ui.server_import import server_import
from ui.session_panel import session_panel
from ui.text import literal
from ui.upload import distinct_uploads, release_uploads, store_uploads, uploader_key
from ui.widgets import error_sentence

REFUSED = "upload-refused"  # why the last Load failed, shown after the rerun that gives the uploader its new key
ORIENTED = "orientation-dismissed"
ORIENTATION = (
    "**New here?** The journey runs through the pages on the left: **Data** (load your FCS, CSV or .h5ad files, pick "
    "the channels) → **Explore** (check the distributions) → **Map** (see the cells in 2-D) → **Label** (name a few "
    "cells of each population) → **Train** (a model labels every other cell) → **Results** (counts, confidence, "
    "exports; **Compare** tests conditions across samples).  \n"
    "The demo (bone marrow, mass cytometry) is open now, so every page can be tried before you upload your own files."
)


@st.cache_data(max_entries=16, show_spinner=False)
def _scale(key: str, _dataset: Dataset) -> ScaleGuess:
    """Whether the dataset's values already look transformed (value range, writer keywords)."""
    return detect_scale(_dataset)


@st.cache_data(max_entries=16, show_spinner=False)
def _unticked(key: str, _dataset: Dataset) -> list[UntickedChannel]:
    """The channels left out of the default features, and why (no marker name, no signal)."""
    return unticked_channels(_dataset)


def _orientation(records: list[DatasetRecord]) -> None:
    """A few lines on the journey for a first-time user: until dismissed or until a dataset of their own is loaded."""
    if st.session_state.get(ORIENTED) or any(r.key != state.demo_key() for r in records):
        return
    with st.container(border=True):
        st.markdown(ORIENTATION)
        if st.button("Got it", key="orientation-dismiss"):
            st.session_state[ORIENTED] = True
            st.rerun()


def _load(files: list) -> None:
    """Store the uploads as a dataset and open it; a refusal is kept for the rerun, which empties the uploader (its
    files were let go, read or refused) so that the next Load does not meet the refused file again."""
    kept, _ = distinct_uploads(files)
    with st.spinner(f"Reading {len(kept)} file(s)…"):
        try:  # the server lets go of the uploads once they are on disk, read or refused
            new_key = store_uploads(ws, [(f.name, f) for f in kept], release=partial(release_uploads, files))
        except Exception as exc:  # one sentence; an unexpected error's traceback goes to the log
            st.session_state[REFUSED] = error_sentence(exc, "Reading the files")
        else:
            state.select_dataset(new_key)
    st.rerun()


ws = state.workspace()
key, dataset = state.current_dataset()

st.title("Data")

records = ws.list_datasets()
_orientation(records)
labels = {r.key: f"{r.name} — {r.n_cells:,} cells, {len(r.samples)} sample(s)" for r in records}
choice = st.selectbox("Dataset in the workspace", list(labels), index=list(labels).index(key),
                      format_func=labels.get, help="Everything you load stays here across refreshes and restarts.")
if choice != key:
    state.select_dataset(choice)
    st.rerun()

with st.expander("Upload FCS, CSV or AnnData files", expanded=len(records) <= 1):
    files = st.file_uploader(
        "FCS (2.0/3.0/3.1), CSV/TSV or AnnData .h5ad (cells × markers; obs columns become annotations) files; "
        "several files are loaded together as samples",
        accept_multiple_files=True, key=uploader_key(),
    )
    if REFUSED in st.session_state:
        st.error(literal(st.session_state.pop(REFUSED)))
    repeated = distinct_uploads(files)[1] if files else []
    if repeated:
        st.warning(f"Added more than once, loaded once: {literal(', '.join(repeated))}.")
    if files and st.button("Load files", type="primary"):
        _load(files)
server_import(key)

for warning in dataset.warnings:
    st.warning(literal(warning))

spec = state.transform_spec(key, dataset)
st.subheader("Channels and transform")
scale = _scale(key, dataset)
if scale.transformed and not spec.arcsinh:
    st.info(literal(scale.reason))
elif scale.transformed:
    st.warning(f"These values look transformed already, yet arcsinh is applied again. {literal(scale.reason)}")
left, right = st.columns([3, 1])
with right:
    presets = {"Mass cytometry (cofactor 5)": COFACTOR_MASS, "Flow cytometry (cofactor 150)": COFACTOR_FLOW,
               "Custom": None}
    current = next((name for name, value in presets.items() if value == spec.cofactor), "Custom")
    preset = st.radio("Instrument", list(presets), index=list(presets).index(current))
    cofactor = st.number_input("arcsinh cofactor", min_value=0.1, value=float(presets[preset] or spec.cofactor),
                               disabled=presets[preset] is not None)
    use_arcsinh = st.checkbox("Apply arcsinh", value=spec.arcsinh,
                              help="Untick for data already on the arcsinh scale (e.g. an exported CSV).")
    compensate = st.checkbox("Compensate", value=spec.compensate, disabled=dataset.spillover is None,
                             help="Apply the file's spillover matrix before the transform; available when the file "
                                  "carries one ($SPILLOVER, SPILL or $COMP).")
with left:
    table = pd.DataFrame({
        "use": [c.name in spec.features for c in dataset.channels],
        "channel": dataset.channel_names,
        "marker": [c.marker for c in dataset.channels],
        "kind": [c.kind for c in dataset.channels],
        "cofactor": pd.Series([spec.cofactors.get(c.name) for c in dataset.channels], dtype=float),
    })
    edited = st.data_editor(
        table, hide_index=True, width="stretch", key=f"channels-{key}", placeholder="",
        disabled=["channel", "marker", "kind"],
        column_config={
            "use": st.column_config.CheckboxColumn("feature", help="Used for maps and models"),
            "cofactor": st.column_config.NumberColumn("cofactor override", min_value=0.1),
        },
    )
    left_out = [u for u in _unticked(key, dataset) if u.channel not in set(edited.loc[edited["use"], "channel"])]
    if left_out:
        st.caption(literal("Not ticked: " + "; ".join(f"{u.channel} ({u.reason})" for u in left_out)
                           + ". Tick a channel to use it all the same."))

chosen = edited.loc[edited["use"], "channel"].tolist()
kinds = dict(zip(table["channel"], table["kind"]))
new_spec = TransformSpec(
    features=chosen,
    cofactor=float(cofactor),
    cofactors={r.channel: float(r.cofactor) for r in edited.itertuples() if pd.notna(r.cofactor)},
    linear=[c for c in chosen if kinds[c] in ("scatter", "time")],
    compensate=bool(compensate and dataset.spillover is not None),
    arcsinh=use_arcsinh,
)
if not chosen:
    st.error("Choose at least one feature channel.")
elif new_spec != spec:
    state.save_transform_spec(key, new_spec)
    spec = new_spec
if chosen:
    cofactor_panel(key, dataset, spec)

st.subheader("Summary")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Cells", f"{dataset.n_cells:,}")
c2.metric("Channels", len(dataset.channels))
c3.metric("Feature markers", len(spec.features))
c4.metric("Samples", len(dataset.samples))
transform_text = (f"arcsinh(x / {spec.cofactor:g})" if spec.arcsinh else "none (data used as is)")
st.markdown(
    f"**Transform:** {transform_text}"
    + (f", {len(spec.cofactors)} per-channel cofactor(s)" if spec.cofactors else "")
    + (f"; scatter/time kept linear: {literal(', '.join(spec.linear))}" if spec.linear else "")
    + f"  \n**Compensation:** {'on' if spec.compensate else 'off' if dataset.spillover is not None else 'no spillover matrix in the file'}"
    + f"  \n**Samples:** {literal(', '.join(dataset.samples[:10]))}{' …' if len(dataset.samples) > 10 else ''}"
    + (f"  \n**Annotations:** {literal(', '.join(map(str, dataset.annotations.columns)))}"
       if len(dataset.annotations.columns) else "")
)

if spec.features:
    x, _ = state.features(key, dataset)
    preview = pd.DataFrame(x[:200], columns=dataset.feature_markers(spec.features))
    st.caption("First 200 cells after the transform")
    st.dataframe(preview, height=240)

session_panel(key, dataset)
