"""Label page: lasso or box cells on the map or a biaxial plot and name them; every action is saved at once."""
import json
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import NOT_A_POPULATION
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import MIN_LABELS_FOR_TRAINING
from cytoauto_core.io.flowjo import WorkspaceGates
from cytoauto_core.io.flowjo_dataset import dataset_gate_labels, dataset_gates, gate_names
from cytoauto_core.store.labels import Assignment, read_label_file
from cytoauto_core.tools.biaxial import default_axes, point_density
from cytoauto_core.tools.selection import cells_in_selection
from ui import maps, marker_table_panel, state, suggest_panel
from ui.plots import heatmap_figure, scatter_figure
from ui.text import literal
from ui.upload import saved_upload

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
store = state.label_store(key, dataset)
markers = dataset.feature_markers(spec.features)
SELECTED = f"selected-{key}"
TARGET = f"target-{key}"  # the population that Assign labels: the one last created, until another is picked
CREATED = "label-created"  # (population id, cells selected then) of the population created by the last run
CLEARS = f"clears-{key}"  # times 'Clear selection' was pressed: part of the plot's key, so a press starts a new plot
PREVIEW_CELLS = 20_000  # median preview per population: a seeded subsample keeps it instant on 1M cells
LABELS, DENSITY = "labels", "density (pseudocolour)"
TABS = ("Label cells", "Marker table")  # only the open tab's content runs
FORMATS = {"PNG": "png", "SVG": "svg"}

st.title("Label")


def _at_most(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if rows.size <= n else np.sort(rng.choice(rows, n, replace=False))


def _act(action, *args, **kwargs):
    """Run a label-store action, reporting bad input as one sentence."""
    try:
        return action(*args, **kwargs)
    except CytoInputError as exc:
        st.session_state["label_error"] = str(exc)
        return None


def _config(name: str) -> dict:
    """Plotly's camera button downloads the figure in the format chosen on the page (PNG or SVG)."""
    fmt = FORMATS[st.session_state.get("label-figure-format", "PNG")]
    return {"displaylogo": False, "toImageButtonOptions": {"format": fmt, "filename": f"{Path(dataset.name).stem}_{name}", "scale": 2}}


def _report(done: Assignment, name: str, selected: int) -> None:
    """Say where the selected cells went and what that took from other populations (a click must never label cells
    silently), and warn about populations it left too small to train."""
    already = selected - done.changed
    said = f"Assigned {done.changed:,} cells to {name}" + (f" ({already:,} selected cells were in it already)"
                                                           if already else "")
    moved = done.moved_sentence()
    st.session_state["label_done"] = f"{said}: {moved}" if moved else f"{said}."
    if done.below_minimum:
        st.session_state["label_warning"] = (
            f"Now below the training minimum of {MIN_LABELS_FOR_TRAINING} cells because of this: "
            f"{', '.join(done.below_minimum)}.")


def _colours(choice: str, xy: np.ndarray, rows: np.ndarray, populations, labels: np.ndarray) -> dict:
    """scatter_figure's colour arguments for a 'Colour by' choice."""
    if choice == LABELS:  # only populations with cells: creating one leaves the plot, and so its selection, as it is
        present = set(np.unique(labels).tolist())
        shown = [p for p in populations if p.id in present]
        return dict(color=maps.codes_for(labels, [p.id for p in shown]), categories=[p.name for p in shown],
                    colors=[p.color for p in shown], labelled_on_top=True)
    if choice == DENSITY:
        density = np.zeros(len(xy), np.float32)
        density[rows] = point_density(xy[rows])
        return dict(color=density, colorscale="Jet", colorbar_title="log density")
    values, categories = maps.color_values(choice, dataset, x, spec.features)
    return dict(color=values, categories=categories)


def _created_sentence(name: str, before: int, now: int) -> str:
    """What creating a population did: it is now the one Assign labels, and the selection drawn before it was kept
    (or, if redrawing the plot cleared it, that it must be drawn again)."""
    said = f"Created {name}: Assign selection now labels cells as {name}."
    if before and now == before:
        return f"{said} The {now:,} cells selected before are still selected: press Assign selection to label them."
    if before:
        return f"{said} Redrawing the plot cleared the selection: draw it again, then press Assign selection."
    return f"{said} Draw around its cells, then press Assign selection."


@st.fragment
def labelling() -> None:
    has_map = bool(maps.stored_maps(key))
    computing = not has_map and maps.map_progress(key, "Label on a marker-vs-marker plot meanwhile.")
    view = st.radio("Select on", ["Map", "Marker vs marker"], index=0 if has_map else 1, horizontal=True)
    populations = store.populations()
    labels = store.labels()
    names = {p.id: p.name for p in populations}
    if view == "Map":
        picked = maps.map_picker(key, "Map to label on")
        if picked is None:
            if not computing:
                st.info("Compute a map on the **Map** page first, or label on a marker-vs-marker plot.")
            population_table(labels)
            return
        plot_name, xy, meta = picked
        axis = (f"{meta['method'].upper()} 1", f"{meta['method'].upper()} 2")
    else:
        first, second = default_axes(x)
        c1, c2 = st.columns(2)
        mx = c1.selectbox("x marker", markers, index=first)
        my = c2.selectbox("y marker", markers, index=second)
        st.caption(f"Default axes: {literal(markers[first])} and {literal(markers[second])}, the two markers with the "
                   "widest spread (highest variance of the transformed values).")
        xy = x[:, [markers.index(mx), markers.index(my)]]
        axis, plot_name = (mx, my), f"{mx}-vs-{my}"

    c1, c2, c3 = st.columns([2, 2, 1])
    choices = [LABELS, DENSITY, *maps.color_choices(dataset, spec.features)]
    colour = c1.selectbox("Colour by", choices, index=choices.index(LABELS if view == "Map" else DENSITY),
                          key=f"colour-{view}")
    within = c2.selectbox("Show only cells of", [None, *names], format_func=lambda i: "all cells" if i is None else names[i],
                          key=f"within-{key}", help="Gate within a gate: a lasso then selects only among these cells, "
                                                    "and what you assign here is recorded inside this one.")
    c3.radio("Download format", list(FORMATS), horizontal=True, key="label-figure-format",
             help="The camera button above the plot saves it in this format.")
    members = store.members(within) if within is not None else None
    if members is None:
        rows = maps.drawn_rows(key, dataset.n_cells, "", None)
    else:
        rows = _at_most(members, maps.MAX_DRAWN, np.random.default_rng(0))
    title = "Draw a lasso or box, then assign the cells to a population" if members is None else \
        f"Only {names[within]} and its sub-populations ({members.size:,} cells)"
    fig = scatter_figure(xy, rows, axis=axis, title=title,
                         **_colours(colour, xy, rows, populations, labels))
    # A new plot starts with no selection: after labels change (an assignment) or 'Clear selection', not after a
    # population is only created, so a selection drawn before creating its population survives.
    chart_key = (f"label-{plot_name}-{within}-{colour}-{zlib.crc32(labels):08x}"
                 f"-{st.session_state.get(CLEARS, 0)}")
    event = st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode=("lasso", "box"),
                            config=_config(plot_name))
    selection = event.selection if event else None
    shapes = {k: selection.get(k) or [] for k in ("box", "lasso")} if selection else {}
    selected = np.empty(0, np.int64)
    if any(shapes.values()):
        signature = (chart_key, json.dumps(shapes, sort_keys=True, default=str))
        cached = st.session_state.get(SELECTED)
        if cached is None or cached[0] != signature:
            started = time.perf_counter()
            found = cells_in_selection(np.asarray(xy), shapes) if members is None else \
                members[cells_in_selection(np.asarray(xy)[members], shapes)]
            st.session_state[SELECTED] = cached = (signature, found)
            st.session_state["selection_ms"] = (time.perf_counter() - started) * 1000
        selected = cached[1]

    if CREATED in st.session_state:
        created, before = st.session_state.pop(CREATED)
        if created in names:  # not deleted meanwhile in another tab
            st.session_state["label_notice"] = _created_sentence(names[created], before, selected.size)
    where = f" of {literal(names[within])}" if members is not None else ""
    said, clear = st.columns([4, 1], vertical_alignment="center")
    said.markdown(f"**{selected.size:,} cells selected**{where} (every cell inside the shape, drawn or not)")
    if clear.button("Clear selection", disabled=selected.size == 0):
        st.session_state[CLEARS] = st.session_state.get(CLEARS, 0) + 1
        st.rerun(scope="fragment")
    left, right = st.columns([2, 3])
    with left:
        with st.form("new-pop", clear_on_submit=True):
            new_name = st.text_input("New population name", placeholder="e.g. CD4 T cells")
            if st.form_submit_button("Create population") and new_name:
                created = _act(store.create_population, new_name)
                if created is not None:
                    st.session_state[TARGET] = created  # a new gate is the active population, as in FlowJo
                    st.session_state[CREATED] = (created, selected.size)
                st.rerun(scope="fragment")
        if st.session_state.get(TARGET) not in names:
            st.session_state.pop(TARGET, None)  # deleted or merged away: fall back to the first population
        target = st.selectbox("Population", list(names), format_func=names.get, key=TARGET,
                              help="The population that **Assign selection** labels; a new population is chosen "
                                   "here as soon as it is created.") if names else None
        b1, b2 = st.columns(2)
        if b1.button("Assign selection", type="primary", disabled=target is None or selected.size == 0):
            done = _act(store.assign, selected, target, within=within)
            if done is not None:
                _report(done, names[target], selected.size)
            st.rerun(scope="fragment")
        if b2.button("Remove labels from selection", disabled=selected.size == 0):
            _act(store.unassign, selected)
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
            st.error(literal(st.session_state.pop("label_error")))
        if "label_done" in st.session_state:
            st.success(literal(st.session_state.pop("label_done")))
        if "label_notice" in st.session_state:
            st.info(literal(st.session_state.pop("label_notice")))
        if "label_warning" in st.session_state:
            st.warning(literal(st.session_state.pop("label_warning")))
    with right:
        population_table(labels)
    suggest_panel.panel(key, x, store, np.asarray(xy), rows, axis)


def population_table(labels: np.ndarray) -> None:
    """The population tree with cells, % of all cells and % of parent, then the median expression per population."""
    tree = store.tree()
    if tree.empty:
        st.info("No populations yet: create one, draw around its cells and press **Assign selection**.")
        return
    indent = ["\u2003" * max(d - 1, 0) + ("↳ " if d else "") for d in tree["depth"]]
    st.dataframe(pd.DataFrame({
        "name": [i + n for i, n in zip(indent, tree["name"])], "cells": tree["cells"],
        "% of all": tree["pct_of_all"].round(2), "% of parent": tree["pct_of_parent"].round(2),
        "enough_for_training": tree["enough_for_training"],
    }), hide_index=True, width="stretch")
    st.caption("Cells include sub-populations (↳, drawn with *Show only cells of* set to the parent). "
               "% of parent is of that parent's cells; a top-level population's parent is all cells.")
    few = tree.loc[~tree["enough_for_training"], "name"].tolist()
    if few:
        st.warning(f"Too few labelled cells to train (fewer than {MIN_LABELS_FOR_TRAINING}): "
                   f"{literal(', '.join(few))}.")
    labelled = tree[tree["own_cells"] > 0]
    if not labelled.empty:
        rng = np.random.default_rng(0)
        medians = pd.DataFrame(
            [np.median(x[_at_most(np.flatnonzero(labels == pid), PREVIEW_CELLS, rng)], axis=0)
             for pid in labelled["id"]],
            index=labelled["name"], columns=markers,
        )
        st.plotly_chart(heatmap_figure(medians, "Median expression of labelled cells (transformed)",
                                       colorscale="Viridis", zmid=None), key="label-medians",
                        config=_config("medians"))


def _wsp_gates(upload) -> WorkspaceGates:
    """The uploaded workspace's gates for this dataset, read once per upload."""
    cache = st.session_state.setdefault(f"wsp-{key}", {})
    if upload.file_id not in cache:
        with saved_upload(upload) as path:
            listed = dataset_gates(path, dataset)
        cache.clear()
        cache[upload.file_id] = listed
    return cache[upload.file_id]


def _to_import(values: np.ndarray, per_population: int) -> int:
    """How many cells LabelStore.import_annotation gives a label to (newly or again): every cell of a population,
    or at most `per_population` of each (0 = all)."""
    names = pd.Series(np.asarray(values).astype(str))
    counts = names[~names.str.lower().isin(NOT_A_POPULATION)].value_counts()
    return int(counts.clip(upper=per_population).sum() if per_population else counts.sum())


def _imported(changed: int, total: int, source: str) -> str:
    """What an import did, telling cells it labelled from cells that already carried those labels: importing again
    changes nothing, and must not read as a failed import."""
    if total and not changed:
        return f"Nothing changed: the {total:,} cells from {source} already carry these labels."
    already = f" {total - changed:,} of the {total:,} cells already carried these labels." if total > changed else ""
    return f"Labelled {changed:,} cells from {source}.{already}"


def import_and_export() -> None:
    """Labels from a CSV, an annotation column or a FlowJo workspace's gates, and the labels as a CSV."""
    st.subheader("Import and export labels")
    from_csv, from_annotation, from_flowjo, export = st.tabs(["Labels CSV", "Annotation column", "FlowJo workspace",
                                                             "Download"])
    with from_csv:
        upload = st.file_uploader("Import labels CSV", type=["csv"], key=f"labels-up-{key}",
                                  help="Any CSV with one row per labelled cell: choose its cell-index and "
                                       "population columns.")
        if upload is not None:
            try:
                frame = read_label_file(upload, upload.name)
            except CytoInputError as exc:
                frame = None
                st.error(literal(exc))
            if frame is not None:
                columns = list(frame.columns)
                c1, c2, c3 = st.columns(3)
                cell_column = c1.selectbox("Cell index column", columns,
                                           index=columns.index("cell_index") if "cell_index" in columns else 0)
                pop_column = c2.selectbox("Population column", columns, index=columns.index("population")
                                          if "population" in columns else min(1, len(columns) - 1))
                base = c3.radio("First cell is", [0, 1], horizontal=True,
                                format_func=lambda b: f"{b} ({'Python, this app' if b == 0 else 'R, FlowJo'})")
                if st.button("Import file"):
                    try:
                        n = store.import_frame(frame, cell_column, pop_column, first_index=base)
                    except CytoInputError as exc:
                        st.error(literal(exc))
                    else:
                        st.session_state["csv-done"] = f"Imported labels for {n:,} cells from '{upload.name}'."
                        st.rerun()
        if "csv-done" in st.session_state:
            st.success(literal(st.session_state.pop("csv-done")))
    with from_annotation:
        columns = list(dataset.annotations.columns)
        if columns:
            column = st.selectbox("Annotation column", columns)
            per_pop = st.number_input("Cells per population (0 = all)", 0, 100_000, 10,
                                      help="Sample a few cells per population to simulate a few clicks.")
            seed = st.number_input("Sampling seed", 0, 2**31 - 1, 0)
            if st.button("Import from annotation"):
                values = dataset.annotations[column].to_numpy()
                n = store.import_annotation(values, per_pop or None, int(seed))
                st.session_state["annotation-done"] = _imported(n, _to_import(values, per_pop),
                                                                f"'{column}' (seed {seed})")
                st.rerun()
            if "annotation-done" in st.session_state:
                st.success(literal(st.session_state.pop("annotation-done")))
        else:
            st.caption("This dataset has no annotation column to import from.")
    with from_flowjo:
        wsp = st.file_uploader("FlowJo workspace (.wsp) describing this dataset's FCS files", type=["wsp"],
                               key=f"wsp-up-{key}")
        if wsp is not None:
            try:
                listed = _wsp_gates(wsp)
            except CytoInputError as exc:
                st.error(literal(exc))
            else:
                chosen = st.multiselect("Gates that become populations", listed.gates, default=listed.leaves,
                                        help="The leaf gates by default. A cell in two chosen gates stays unlabelled.")
                c1, c2 = st.columns(2)
                per_gate = c1.number_input("Cells per gate (0 = all)", 0, 10_000_000, 0,
                                           help="Label only this many randomly chosen cells of each gate.")
                gate_seed = c2.number_input("Gate sampling seed", 0, 2**31 - 1, 0)
                if st.button("Import gates", disabled=not chosen):
                    try:
                        with saved_upload(wsp) as wsp_path:
                            gated = dataset_gate_labels(wsp_path, dataset, chosen)
                    except CytoInputError as exc:
                        st.error(literal(exc))
                    else:
                        values = gate_names(gated)
                        n = store.import_annotation(values, per_gate or None, int(gate_seed))
                        counts = ", ".join(f"{min(c, per_gate) if per_gate else c:,} {name}"
                                           for name, c in sorted(gated.counts().items(), key=lambda kv: -kv[1]))
                        st.session_state["wsp-done"] = (
                            _imported(n, _to_import(values, per_gate),
                                      f"{len(chosen)} gates of '{wsp.name}' ({counts or 'no cells'})")
                            + (f" {gated.overlaps:,} cells lie in two or more chosen gates and stay unlabelled."
                               if gated.overlaps else " No cell lies in two chosen gates."))
                        st.rerun()
                if "wsp-done" in st.session_state:
                    st.success(literal(st.session_state.pop("wsp-done")))
    with export:
        st.download_button("Download labels (CSV)", store.to_frame().to_csv(index=False),
                           file_name=f"{dataset.name}_labels.csv", mime="text/csv")


by_hand, from_table = st.tabs(TABS, key="label-tab", on_change="rerun")
if from_table.open:
    with from_table:
        marker_table_panel.panel(key, dataset, x, spec, store)
else:
    with by_hand:
        labelling()
        import_and_export()
