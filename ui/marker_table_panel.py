"""The Label page's Marker table tab: a population × marker table (uploaded or typed) names every cell with no clicks;
its populations then become the user's, and the Train page trains with the table beside the clicked labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import UNASSIGNED, Dataset
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import name_key
from cytoauto_core.io.marker_table import EXPRESSED, NOT_EXPRESSED, MarkerTable, match_markers, read_marker_table
from cytoauto_core.prep.transforms import TransformSpec
from cytoauto_core.store.labels import PALETTE, LabelStore
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.tools.biaxial import default_axes
from cytoauto_core.tools.table_annotation import UNASSIGNED_BELOW, TableAnnotation, annotate, feature_columns
from ui import maps, state
from ui.plots import scatter_figure
from ui.text import literal
from ui.widgets import job_panel

TABLE_CALLS = "table-calls"  # the stored array: each cell's population index in the table (-1 = unassigned)
SEED = 0
POPULATION = "population"  # the grid's first column
SHOWN = {EXPRESSED: "+1", NOT_EXPRESSED: "−1"}  # how the grid shows a value; not informative is blank
TYPED = "marker table"  # what a sentence about a table typed in the grid calls it
REFINE = ("Cells you label on the **Label cells** tab refine the table's call: when you train, your clicks count "
          "beside the table, and the Train page says where they disagree with it.")


def panel(key: str, dataset: Dataset, x: np.ndarray, spec: TransformSpec, store: LabelStore) -> None:
    """Upload or type the table, name every cell from it in the background, and show and adopt what it named."""
    st.caption("One row per population, one column per marker: **+1** expressed, **−1** not expressed, blank not "
               f"informative (e.g. CD4 T cells: CD3 +1, CD4 +1, CD8 −1). {REFINE}")
    current = _dataset_table(key)
    table = _table_in_grid(key, dataset, spec, current)
    if table is not None:
        match = match_markers(table, dataset)
        _name_button(key, x, table, match.notes, feature_columns(table, match.pairs, spec.features))
    job_panel(state.job_manager().get(_job_key(key)))
    _named_cells(key, dataset, x, spec, store, table, current)


def _dataset_table(key: str) -> MarkerTable | None:
    """The dataset's marker table (the one the Train page trains with), None when it has none or it is damaged (then
    a sentence says so)."""
    try:
        return state.workspace().load_marker_table(key)
    except CytoInputError as exc:
        st.warning(literal(exc))
        return None


def _job_key(key: str) -> str:
    return f"marker-table-{key}"


def _draft_key(key: str) -> str:
    """Session state: the table the grid starts from (source name, table as a dict or None, version)."""
    return f"marker-table-draft-{key}"


def _set_draft(key: str, source: str, table: MarkerTable | None) -> None:
    """Start the grid afresh from `table` (None: empty, with the dataset's markers as columns)."""
    version = st.session_state.get(_draft_key(key), {}).get("version", 0) + 1
    st.session_state[_draft_key(key)] = {"source": source, "table": None if table is None else table.to_dict(),
                                         "version": version}


def _first_draft(key: str, table: MarkerTable | None) -> None:
    """The grid's first table in this session: the dataset's marker table `table`, else the one that last named its
    cells, else none."""
    if _draft_key(key) in st.session_state:
        return
    stored = state.workspace().load_array(key, TABLE_CALLS)
    if table is None and stored is not None:
        table = _table_of(stored[1])
    _set_draft(key, TYPED, table)


def _table_of(meta: dict) -> MarkerTable | None:
    """The table stored beside a naming's calls, None when it is damaged."""
    try:
        return MarkerTable.from_dict(meta.get("table"))
    except CytoInputError:
        return None


def _read_upload(key: str) -> None:
    """A newly uploaded file becomes the grid's table; its error sentence stays on the page while it is uploaded."""
    upload = st.file_uploader("Marker table (CSV)", type=["csv", "tsv", "txt"], key=f"marker-table-up-{key}",
                              help="First column the population names, then one column per marker with 1, -1 or "
                                   "blank (also +/−, pos/neg, NA); comma, semicolon or tab separated.")
    read = f"marker-table-read-{key}"
    if upload is None:
        st.session_state.pop(read, None)
        return
    if st.session_state.get(read, (None,))[0] != upload.file_id:
        try:
            _set_draft(key, upload.name, read_marker_table(upload.getvalue(), upload.name))
            problem = None
        except CytoInputError as exc:
            problem = str(exc)
        st.session_state[read] = (upload.file_id, problem)
    if st.session_state[read][1]:
        st.error(literal(st.session_state[read][1]))


def _table_in_grid(key: str, dataset: Dataset, spec: TransformSpec, current: MarkerTable | None
                   ) -> MarkerTable | None:
    """The editable grid (starting from the dataset's marker table `current`, else the table read or typed so far)
    and the table it holds; None while it holds no row or cannot be read (then a sentence says why)."""
    _first_draft(key, current)
    _read_upload(key)
    draft = st.session_state[_draft_key(key)]
    markers = dataset.feature_markers(spec.features)
    table = None if draft["table"] is None else MarkerTable.from_dict(draft["table"])
    if table is not None and st.button("Start an empty table", help="Clear the grid, with this dataset's markers as "
                                                                    "its columns."):
        _set_draft(key, TYPED, None)
        st.rerun()
    config = {POPULATION: st.column_config.TextColumn(POPULATION, pinned=True),
              **{m: st.column_config.SelectboxColumn(m, options=list(SHOWN.values()))
                 for m in (markers if table is None else table.markers)}}
    edited = st.data_editor(grid_frame(table, markers), key=f"marker-table-grid-{key}-{draft['version']}",
                            num_rows="dynamic", hide_index=True, width="stretch", height="content",
                            placeholder="", column_config=config)
    try:
        typed = table_from_grid(edited, draft["source"])
    except CytoInputError as exc:
        st.error(literal(exc))
        return None
    if typed is None:
        st.info("Upload a table, or add a row per population to the grid (the **+** below it) and choose +1 or −1 "
                "for the markers that tell it apart.")
    return typed


def grid_frame(table: MarkerTable | None, markers: list[str]) -> pd.DataFrame:
    """The grid's rows: one per population of `table` with +1 / −1 / blank, or none, with `markers` as columns."""
    columns = [POPULATION, *(markers if table is None else table.markers)]
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    rows = [[name, *(SHOWN.get(int(v)) for v in row)] for name, row in zip(table.populations, table.values)]
    return pd.DataFrame(rows, columns=columns, dtype="object")


def table_from_grid(frame: pd.DataFrame, source: str) -> MarkerTable | None:
    """The grid read as read_marker_table reads a file (so a typed table is checked as an uploaded one, in sentences
    naming `source`); None while every cell is blank."""
    cells = frame.astype("object").where(frame.notna(), "").astype(str)
    if not cells.apply(lambda column: column.str.strip().astype(bool)).to_numpy().any():
        return None
    return read_marker_table(cells.to_csv(index=False).encode("utf-8"), source)


def _name_button(key: str, x: np.ndarray, table: MarkerTable, notes: list[str], columns: list[int]) -> None:
    """The match notes and 'Name cells from the table', which names every cell in the background."""
    for note in notes:
        st.info(literal(note))
    used = sum(c >= 0 for c in columns)
    left_out = [m for m, c in zip(table.markers, columns) if c < 0]
    st.caption(f"{len(table.populations)} populations; {used} of the table's {len(table.markers)} markers are features "
               f"in use" + (f" (not {literal(', '.join(left_out))})." if left_out else "."))
    if not used:
        st.warning("None of the table's markers is a feature in use, so it cannot name cells: check the marker names "
                   "or the features chosen on the **Data** page.")
    if st.button("Name cells from the table", type="primary", disabled=not used):
        ws = state.workspace()

        def work(progress, should_stop) -> dict[str, int]:
            found = annotate(table, columns, x, seed=SEED, progress=progress, should_stop=should_stop)
            save_calls(ws, key, table, found)
            return found.counts()

        state.job_manager().start(_job_key(key), "Naming cells from the marker table", work)


def save_calls(ws: Workspace, key: str, table: MarkerTable, found: TableAnnotation) -> None:
    """Store what the table named (calls per cell) with the table, its populations, seed, explanations and notes."""
    ws.save_array(key, TABLE_CALLS, found.calls, {
        "populations": found.populations, "seed": found.seed, "explanations": found.explanations,
        "notes": found.notes, "counts": found.counts(), "table": table.to_dict()})


def colours(populations: list[str], store: LabelStore) -> list[str]:
    """Each table population's colour: that of the user's population of the same name (name_key), else the palette's."""
    own = {name_key(p.name): p.color for p in store.populations()}
    return [own.get(name_key(name), PALETTE[i % len(PALETTE)]) for i, name in enumerate(populations)]


def use_populations(ws: Workspace, key: str, store: LabelStore, table: MarkerTable) -> list[str]:
    """Create each table population the user does not have yet (names matched by name_key), with no cells and the
    map's colour, and make `table` the dataset's marker table; returns the populations created."""
    have = {name_key(p.name) for p in store.populations()}
    created = []
    for name, colour in zip(table.populations, colours(table.populations, store)):
        if name_key(name) not in have:
            store.create_population(name, colour)
            created.append(name)
    ws.save_marker_table(key, table)
    return created


def _adopted_sentence(created: list[str], table: MarkerTable) -> str:
    """What 'Use the table's populations' did."""
    made = (f"Created {len(created)} of the table's {len(table.populations)} populations (with no labelled cells: "
            "the table names their cells)" if created else
            f"All {len(table.populations)} of the table's populations were already yours")
    return f"{made}; the Train page now trains with this marker table beside your clicks."


def _named_cells(key: str, dataset: Dataset, x: np.ndarray, spec: TransformSpec, store: LabelStore,
                 table: MarkerTable | None, current: MarkerTable | None) -> None:
    """The stored naming: its notes, a map coloured by it, its populations with counts and explanations, and the
    buttons that make its table the dataset's marker table `current`, which the Train page trains with (or stop
    that)."""
    stored = state.workspace().load_array(key, TABLE_CALLS)
    named = None if stored is None else _table_of(stored[1])
    if named is None or len(stored[0]) != dataset.n_cells:
        return
    calls, meta = stored
    st.subheader("Cells named from the table")
    if table is not None and table.to_dict() != meta["table"]:
        st.caption("The grid has changed since: press **Name cells from the table** to name them from it.")
    for note in meta.get("notes", []):
        st.info(literal(note))
    palette = colours(named.populations, store)
    _map(key, dataset, x, spec, calls, named.populations, palette)
    st.dataframe(counts_frame(meta, dataset.n_cells), hide_index=True, width="stretch", height="content",
                 column_config={"explanation": st.column_config.TextColumn("explanation", width="large")})
    _adopt(key, store, named, current)


def counts_frame(meta: dict, n_cells: int) -> pd.DataFrame:
    """The table's populations (then 'unassigned') with their cells, % of all cells and the sentence explaining them."""
    counts = meta["counts"]
    explanations = {**meta["explanations"], UNASSIGNED: f"No population's row fits these cells with a probability of "
                                                        f"{UNASSIGNED_BELOW:g} or more."}
    return pd.DataFrame({"population": list(counts), "cells": list(counts.values()),
                         "% of all": [round(100 * n / max(n_cells, 1), 2) for n in counts.values()],
                         "explanation": [explanations.get(name, "") for name in counts]})


def _map(key: str, dataset: Dataset, x: np.ndarray, spec: TransformSpec, calls: np.ndarray, populations: list[str],
         palette: list[str]) -> None:
    """The stored map (else the two widest-spread markers) coloured by the table's populations, at most
    maps.MAX_DRAWN cells drawn."""
    picked = maps.map_picker(key, "Map of the table's populations")
    if picked is None:
        first, second = default_axes(x)
        markers = dataset.feature_markers(spec.features)
        xy, axis = x[:, [first, second]], (markers[first], markers[second])
        st.caption(f"No map yet (the **Map** page makes one): drawn on {literal(axis[0])} and {literal(axis[1])}, "
                   "the two markers with the widest spread.")
    else:
        xy, method = picked[1], picked[2]["method"].upper()
        axis = (f"{method} 1", f"{method} 2")
    rows = maps.drawn_rows(key, dataset.n_cells, "", None)
    fig = scatter_figure(np.asarray(xy), rows, np.asarray(calls), categories=populations, colors=palette, axis=axis,
                         title="Every cell named from the marker table")
    st.plotly_chart(fig, key=f"marker-table-map-{key}", config={"displaylogo": False})


def _adopt(key: str, store: LabelStore, named: MarkerTable, current: MarkerTable | None) -> None:
    """'Use the table's populations', or, once the table is the dataset's marker table, a word saying so and a way
    to stop."""
    ws = state.workspace()
    done = f"marker-table-done-{key}"
    if current is not None and current.to_dict() == named.to_dict():
        st.success("This is the dataset's marker table: the Train page trains with it beside your clicks.")
        if st.button("Stop training with the marker table"):
            ws.save_marker_table(key, None)
            st.rerun()
    elif st.button("Use the table's populations", type="primary",
                   help="Creates each population of the table you do not have yet (no cells are labelled) and "
                        "makes this the marker table the Train page trains with."):
        try:
            created = use_populations(ws, key, store, named)
        except CytoInputError as exc:
            st.error(literal(exc))
        else:
            st.session_state[done] = _adopted_sentence(created, named)
            st.rerun()
    if done in st.session_state:
        st.info(literal(st.session_state.pop(done)))
