"""'Label these next' on the Label page: suggested groups of cells drawn on the map, each answered with one action
(accept the model's population, choose another, name a new one, skip), saved through the label store."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import MIN_LABELS_FOR_TRAINING
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.tools.suggestions import NO_PROPOSAL, Suggestions, candidate_rows, suggest_cells
from cytoauto_core.tools.training import DEFAULT_COMPARISON, build_model, trainable_cells
from ui.plots import UNASSIGNED_COLOR
from ui.results import load_result
from ui.text import literal

QUICK_MODEL = DEFAULT_COMPARISON[0]  # the fast baseline fitted when no model has been trained on this dataset yet
SEED = 0


@dataclass
class Proposal:
    """One computed batch: the suggestions, the names of their proposed populations and the groups answered."""

    suggestions: Suggestions
    names: dict[int, str]
    token: int
    answered: set[int] = field(default_factory=set)


def probabilities(key: str, x: np.ndarray, labels: np.ndarray, names: dict[int, str], candidates: np.ndarray
                  ) -> tuple[np.ndarray | None, np.ndarray | None, dict[int, str], str]:
    """The candidates' probabilities, the population id of each column, their names and where they come from: the
    dataset's last trained (or applied) model, else a quick fit of QUICK_MODEL on the current labels, else none."""
    result = load_result(key)
    if result is not None:
        return (np.asarray(result.proba[candidates]), result.class_ids, result.names,
                f"the last trained model ({result.meta['model']})")
    cells = trainable_cells(labels)
    if np.unique(labels[cells]).size < 2:
        return None, None, {}, (f"no model yet (fewer than two populations with {MIN_LABELS_FOR_TRAINING} labels), "
                                "so no population is proposed")
    model = build_model(QUICK_MODEL, SEED).fit(x[cells], labels[cells].astype(np.int64), x[candidates])
    ids = np.asarray(model.classes_, np.int64)
    return (model.predict_proba(x[candidates]), ids, {int(c): names[int(c)] for c in ids},
            f"a quick {QUICK_MODEL.lower()} on your labels (no model trained yet)")


def compute(key: str, x: np.ndarray, store: LabelStore, n_cells: int) -> Proposal:
    """Suggestions for the current labels (seeded), ready to draw and answer."""
    labels = store.labels()
    names = {p.id: p.name for p in store.populations()}
    candidates = candidate_rows(np.flatnonzero(labels < 0), seed=SEED)
    proba, ids, class_names, source = probabilities(key, x, labels, names, candidates)
    suggestions = suggest_cells(x, candidates, proba, np.flatnonzero(labels >= 0), class_ids=ids, n_cells=n_cells,
                                seed=SEED, source=source)
    return Proposal(suggestions, class_names, token=store.version())


def figure(xy: np.ndarray, rows: np.ndarray, proposal: Proposal, colours: dict[str, str], axis: tuple[str, str]
           ) -> go.Figure:
    """The drawn cells in grey, each open group's cells large in the colour of its proposed population, numbered."""
    s = proposal.suggestions
    fig = go.Figure(go.Scattergl(x=xy[rows, 0], y=xy[rows, 1], mode="markers", hoverinfo="skip", showlegend=False,
                                 marker=dict(size=3, color=UNASSIGNED_COLOR, opacity=0.5)))
    for g in range(s.n_groups):
        if g in proposal.answered:
            continue
        cells, name = s.members(g), proposal.names.get(s.group_proposal(g), "no proposal")
        fig.add_trace(go.Scatter(
            x=xy[cells, 0], y=xy[cells, 1], mode="markers+text", text=[str(g + 1)] + [""] * (cells.size - 1),
            textposition="top center", name=f"group {g + 1}: {name}", customdata=cells,
            hovertemplate=f"group {g + 1} · cell %{{customdata}} · model: {name}<extra></extra>",
            marker=dict(size=11, color=colours.get(name, "#444444"), line=dict(width=1.5, color="black"))))
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=axis[0], yaxis_title=axis[1],
                      title="Suggested cells (numbered by group, coloured by the model's population)")
    return fig


def group_row(store: LabelStore, proposal: Proposal, g: int, key: str) -> str | None:
    """One group's answers; the population name chosen, '' for skip, None while unanswered."""
    s = proposal.suggestions
    cells = s.members(g)
    proposed = s.group_proposal(g)
    name = proposal.names.get(proposed) if proposed != NO_PROPOSAL else None
    prefix = f"sg-{key}-{proposal.token}-{g}"
    c0, c1, c2, c3, c4 = st.columns([3, 2, 3, 3, 1], vertical_alignment="center")
    c0.markdown(f"**Group {g + 1}** · {cells.size} cells · model: **{literal(name) if name else 'no proposal'}**")
    if c1.button(f"Accept {literal(name)}" if name else "Accept", key=f"{prefix}-accept", disabled=name is None,
                 type="primary"):
        return name
    others = [p.name for p in store.populations() if p.name != name]
    other = c2.selectbox(f"Another population for group {g + 1}", others, index=None, key=f"{prefix}-other",
                         placeholder="choose another population", label_visibility="collapsed")
    if other:
        return other
    new = c3.text_input(f"New population for group {g + 1}", key=f"{prefix}-new", label_visibility="collapsed",
                        placeholder="or name a new population ⏎")
    if new.strip():
        return new.strip()
    if c4.button("Skip", key=f"{prefix}-skip"):
        return ""
    return None


def panel(key: str, x: np.ndarray, store: LabelStore, xy: np.ndarray, rows: np.ndarray, axis: tuple[str, str]
          ) -> None:
    """The 'Label these next' section: size, button, the map of suggestions and one row of answers per group."""
    state_key = f"suggest-{key}"
    st.subheader("Label these next")
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    n_pops = max(len(store.populations()), 2)
    n_cells = c1.number_input("Cells to suggest", 1, 500, 5 * n_pops, key=f"suggest-n-{key}",
                              help=f"Default: 5 per population, in groups of {MIN_LABELS_FOR_TRAINING} (a group can "
                                   "found a new population on its own).")
    if c2.button("Label these next", help="Cells where a label helps most: the model is unsure, between populations, "
                                          "in dense regions, or far from every label. Seeded."):
        with st.spinner("Choosing cells…"):
            st.session_state[state_key] = compute(key, x, store, int(n_cells))
    proposal: Proposal | None = st.session_state.get(state_key)
    if proposal is None:
        return
    st.caption(literal(proposal.suggestions.explanation))
    colours = {p.name: p.color for p in store.populations()}
    open_groups = [g for g in range(proposal.suggestions.n_groups) if g not in proposal.answered]
    if not open_groups:
        st.success("Every suggested group is answered. Train again, or press **Label these next** for more.")
        return
    st.plotly_chart(figure(xy, rows, proposal, colours, axis), key=f"suggest-map-{key}-{proposal.token}")
    for g in open_groups:
        chosen = group_row(store, proposal, g, key)
        if chosen is None:
            continue
        if chosen:
            try:
                store.assign(proposal.suggestions.members(g), store.population_named(chosen))
            except CytoInputError as exc:
                st.error(literal(exc))
                return
        proposal.answered.add(g)
        st.rerun()
