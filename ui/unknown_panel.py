"""'Unknown cells' on the Results page: compact groups of the cells unlike every named population, each drawn on the
map when chosen, and one action that makes a group a new population (its most typical cells labelled through the
label store) to go on labelling and retrain."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.prep.transforms import TransformSpec
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.tools.unknown_groups import SEED_CELLS, UnknownGroups, find_unknown_groups
from ui.plots import UNASSIGNED_COLOR, UNKNOWN_COLOR
from ui.results import StoredResult
from ui.text import literal

SEED = 0
HIGHLIGHT = "#d62728"
MADE = "unknown-made"  # dataset key → (result's bundle hash, the sentence saying which population was made)


@st.cache_data(max_entries=8, show_spinner="Grouping the unknown cells…")
def groups_for(key: str, made_by: str, markers: tuple[str, ...], _x: np.ndarray, _unknown: np.ndarray
               ) -> UnknownGroups:
    """The unknown cells' groups, once per dataset, result, features and level (`made_by` names all of them)."""
    return find_unknown_groups(_x, _unknown, list(markers), seed=SEED)


def figure(xy: np.ndarray, rows: np.ndarray, unknown: np.ndarray, groups: UnknownGroups, chosen: int,
           seeds: np.ndarray, axis: tuple[str, str]) -> go.Figure:
    """The drawn cells in light grey, the unknown ones in dark grey, the chosen group's cells in red and the cells
    'Make a new population' labels (`seeds`) large and outlined."""
    fig = go.Figure()
    for name, shown, colour in (("named or unassigned", ~unknown[rows], UNASSIGNED_COLOR),
                                ("unknown", unknown[rows], UNKNOWN_COLOR)):
        fig.add_trace(go.Scattergl(x=xy[rows[shown], 0], y=xy[rows[shown], 1], mode="markers", name=name,
                                   hoverinfo="skip", marker=dict(size=3, color=colour, opacity=0.6)))
    members = rows[groups.group[rows] == chosen]
    fig.add_trace(go.Scattergl(x=xy[members, 0], y=xy[members, 1], mode="markers", name=f"group {chosen + 1}",
                               customdata=members, hovertemplate=f"group {chosen + 1} · cell %{{customdata}}"
                                                                 "<extra></extra>",
                               marker=dict(size=4, color=HIGHLIGHT)))
    fig.add_trace(go.Scattergl(x=xy[seeds, 0], y=xy[seeds, 1], mode="markers", name="its most typical cells",
                               customdata=seeds, hovertemplate="typical cell %{customdata}<extra></extra>",
                               marker=dict(size=10, color=HIGHLIGHT, line=dict(width=1.5, color="black"))))
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=axis[0], yaxis_title=axis[1],
                      title=f"Unknown cells, group {chosen + 1} highlighted", legend=dict(itemsizing="constant"))
    return fig


def make_population(store: LabelStore, x: np.ndarray, groups: UnknownGroups, g: int, name: str) -> str:
    """Label group `g`'s most typical cells as population `name` (created when new); the sentence saying so."""
    existed = name.strip() in {p.name for p in store.populations()}
    cells = groups.seed_cells(x, g)
    assignment = store.assign(cells, store.population_named(name))
    verb = "added to" if existed else "labelled as the new population"
    return (f"The {cells.size} most typical cells of group {g + 1} were {verb} **{literal(name.strip())}**. "
            f"{literal(assignment.moved_sentence())}").strip()


def panel(key: str, result: StoredResult, unknown: np.ndarray, rejection: float, x: np.ndarray, spec: TransformSpec,
          markers: list[str], store: LabelStore, coords: np.ndarray | None, rows: np.ndarray, axis: tuple[str, str]
          ) -> None:
    """The 'Unknown cells' section (none for a model without unknown detection): the groups, the chosen one on the
    map, and 'Make a new population'."""
    if result.novelty is None:
        return
    st.subheader("Unknown cells")
    made = st.session_state.get(MADE, {}).get(key)
    if made and made[0] == result.meta["bundle_hash"]:  # said until a new model replaces this result
        st.success(made[1])
        st.page_link("pages/label.py", label="Go on labelling on the Label page", icon=":material/ads_click:")
        st.page_link("pages/train.py", label="Retrain on the Train page", icon=":material/model_training:")
    if not unknown.any():
        st.caption("No cell is unknown at this level.")
        return
    made_by = json.dumps([result.meta["bundle_hash"], result.meta.get("trained_at"), rejection, spec.to_dict()],
                         sort_keys=True)
    groups = groups_for(key, made_by, tuple(markers), x, unknown)
    sizes = groups.sizes()
    st.caption(f"{groups.n_unknown:,} unknown cells: {groups.n_groups} compact "
               f"{'group' if groups.n_groups == 1 else 'groups'}, {groups.scattered():,} scattered between "
               "populations. Groups: k-means of the dense unknown cells (seed 0), kept when compact; markers: the "
               "largest differences of the group's median from that of all cells.")
    if not groups.n_groups:
        return
    widget = hashlib.sha256(made_by.encode()).hexdigest()[:12]  # a new grouping gets a fresh choice
    chosen = st.selectbox("Group", range(groups.n_groups), key=f"unknown-group-{key}-{widget}",
                          format_func=lambda g: f"Group {g + 1} · {sizes[g]:,} cells · {groups.descriptions[g]}")
    if coords is not None:
        st.plotly_chart(figure(coords, rows, unknown, groups, chosen, groups.seed_cells(x, chosen), axis),
                        key=f"unknown-map-{key}")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input("Name of the new population", key=f"unknown-name-{key}",
                         placeholder="e.g. Monocytes")
    if c2.button("Make a new population", type="primary",
                 help=f"Labels the group's {SEED_CELLS} most typical cells (nearest its median) as this population; "
                      "check them on the Label page, then retrain."):
        try:
            sentence = make_population(store, x, groups, chosen, name)
        except CytoInputError as exc:
            st.error(literal(exc))
            return
        st.session_state.setdefault(MADE, {})[key] = (result.meta["bundle_hash"], sentence)
        st.rerun()
