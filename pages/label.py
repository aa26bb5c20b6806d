"""Label page: lasso or box cells on the map or a biaxial plot and name them; every action is saved at once."""
import time

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.errors import CytoInputError
from cytoauto_core.labels import MIN_LABELS_FOR_TRAINING
from cytoauto_core.selection import cells_in_selection
from ui import maps, state
from ui.plots import heatmap_figure, scatter_figure

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
store = state.label_store(key, dataset)
markers = [dataset.channels[i].marker for i in dataset.channel_index(spec.features)]
SELECTED = f"selected-{key}"
PREVIEW_CELLS = 20_000  # median preview per population: a seeded subsample keeps it instant on 1M cells

st.title("Label")


def _at_most(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if rows.size <= n else np.sort(rng.choice(rows, n, replace=False))


def _act(action, *args) -> None:
    """Run a label-store action, reporting bad input as one sentence."""
    try:
        action(*args)
    except CytoInputError as exc:
        st.session_state["label_error"] = str(exc)


@st.fragment
def labelling() -> None:
    view = st.radio("Select on", ["Map", "Marker vs marker"], horizontal=True)
    if view == "Map":
        picked = maps.map_picker(key, "Map to label on")
        if picked is None:
            st.info("Compute a map on the **Map** page first, or label on a marker-vs-marker plot.")
            return
        name, xy, meta = picked
        axis = (f"{meta['method'].upper()} 1", f"{meta['method'].upper()} 2")
        chart_key = f"label-map-{name}"
    else:
        c1, c2 = st.columns(2)
        mx = c1.selectbox("x marker", markers, index=0)
        my = c2.selectbox("y marker", markers, index=min(1, len(markers) - 1))
        xy = x[:, [markers.index(mx), markers.index(my)]]
        axis = (mx, my)
        chart_key = f"label-biax-{mx}-{my}"

    populations = store.populations()
    labels = store.labels()
    codes = maps.codes_for(labels, [p.id for p in populations])
    rows = maps.drawn_rows(key, dataset.n_cells, "", None)
    fig = scatter_figure(xy, rows, codes, categories=[p.name for p in populations],
                         colors=[p.color for p in populations], axis=axis,
                         title="Draw a lasso or box, then assign the cells to a population")
    event = st.plotly_chart(fig, key=f"{chart_key}-v{store.version()}", on_select="rerun",
                            selection_mode=("lasso", "box"))
    selection = event.selection if event else None
    if selection and (selection.get("box") or selection.get("lasso")):
        started = time.perf_counter()
        st.session_state[SELECTED] = cells_in_selection(np.asarray(xy), selection)
        st.session_state["selection_ms"] = (time.perf_counter() - started) * 1000
    selected = st.session_state.get(SELECTED, np.empty(0, np.int64))

    st.markdown(f"**{selected.size:,} cells selected** (every cell inside the shape, drawn or not)")
    left, right = st.columns([2, 3])
    with left:
        names = {p.id: p.name for p in populations}
        with st.form("new-pop", clear_on_submit=True):
            new_name = st.text_input("New population name", placeholder="e.g. CD4 T cells")
            if st.form_submit_button("Create population") and new_name:
                _act(store.create_population, new_name)
                st.rerun(scope="fragment")
        target = st.selectbox("Population", list(names), format_func=names.get) if names else None
        b1, b2 = st.columns(2)
        if b1.button("Assign selection", type="primary", disabled=target is None or selected.size == 0):
            _act(store.assign, selected, target)
            st.session_state.pop(SELECTED, None)
            st.rerun(scope="fragment")
        if b2.button("Remove labels from selection", disabled=selected.size == 0):
            _act(store.unassign, selected)
            st.session_state.pop(SELECTED, None)
            st.rerun(scope="fragment")
        u1, u2 = st.columns(2)
        if u1.button("↶ Undo", disabled=not store.can_undo()):
            _act(store.undo)
            st.rerun(scope="fragment")
        if u2.button("↷ Redo", disabled=not store.can_redo()):
            _act(store.redo)
            st.rerun(scope="fragment")
        if target is not None:
            with st.expander("Rename, recolour, merge or delete"):
                renamed = st.text_input("Rename to", value=names[target], key=f"rename-{target}")
                if renamed != names[target] and st.button("Rename"):
                    _act(store.rename, target, renamed)
                    st.rerun(scope="fragment")
                color = st.color_picker("Colour", value=next(p.color for p in populations if p.id == target),
                                        key=f"color-{target}")
                if st.button("Apply colour"):
                    _act(store.recolor, target, color)
                    st.rerun(scope="fragment")
                others = [i for i in names if i != target]
                merge = st.multiselect("Merge into this population", others, format_func=names.get)
                if merge and st.button("Merge"):
                    _act(store.merge, merge, target)
                    st.rerun(scope="fragment")
                if st.button("Delete population"):
                    _act(store.delete, target)
                    st.rerun(scope="fragment")
        if "label_error" in st.session_state:
            st.error(st.session_state.pop("label_error"))
    with right:
        counts = store.counts()
        if counts.empty:
            st.info("No populations yet: create one, draw around its cells and press **Assign selection**.")
        else:
            st.dataframe(counts[["name", "cells", "enough_for_training"]], hide_index=True, width="stretch")
            few = counts.loc[~counts["enough_for_training"], "name"].tolist()
            if few:
                st.warning(f"Too few labelled cells to train (fewer than {MIN_LABELS_FOR_TRAINING}): {', '.join(few)}.")
            labelled = counts[counts["cells"] > 0]
            if not labelled.empty:
                rng = np.random.default_rng(0)
                medians = pd.DataFrame(
                    [np.median(x[_at_most(np.flatnonzero(labels == pid), PREVIEW_CELLS, rng)], axis=0)
                     for pid in labelled["id"]],
                    index=labelled["name"], columns=markers,
                )
                st.plotly_chart(heatmap_figure(medians, "Median expression of labelled cells (transformed)",
                                               colorscale="Viridis", zmid=None), key="label-medians")


labelling()

st.subheader("Import and export labels")
c1, c2, c3 = st.columns(3)
with c1:
    st.download_button("Download labels (CSV)", store.to_frame().to_csv(index=False),
                       file_name=f"{dataset.name}_labels.csv", mime="text/csv")
with c2:
    upload = st.file_uploader("Import labels CSV (cell_index, population)", type=["csv"], key=f"labels-up-{key}")
    if upload is not None and st.button("Import file"):
        try:
            n = store.import_frame(pd.read_csv(upload))
            st.success(f"Imported labels for {n:,} cells.")
        except CytoInputError as exc:
            st.error(str(exc))
        except (ValueError, pd.errors.ParserError):
            st.error("The label file could not be read as CSV.")
with c3:
    columns = list(dataset.annotations.columns)
    if columns:
        column = st.selectbox("Annotation column", columns)
        per_pop = st.number_input("Cells per population (0 = all)", 0, 100_000, 10,
                                  help="Sample a few cells per population to simulate a few clicks.")
        seed = st.number_input("Sampling seed", 0, 2**31 - 1, 0)
        if st.button("Import from annotation"):
            n = store.import_annotation(dataset.annotations[column].to_numpy(), per_pop or None, int(seed))
            st.success(f"Labelled {n:,} cells from '{column}' (seed {seed}).")
            st.rerun()
    else:
        st.caption("This dataset has no annotation column to import from.")
