"""The Data page's cofactor panel: per-channel suggestions with a before/after histogram, accepted per channel."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import Dataset
from cytoauto_core.prep.transforms import (SCALE_SAMPLE, CofactorSuggestion, TransformSpec, suggest_cofactors,
                                           transform_events)
from ui import state
from ui.plots import histogram_figure

DIFFERENT = 1.25  # a suggestion is shown when it differs from the cofactor in use by at least this factor


@st.cache_data(max_entries=8, show_spinner="Measuring each channel's negative population…")
def _suggestions(key: str, spec_json: str, _dataset: Dataset) -> list[CofactorSuggestion]:
    return suggest_cofactors(_dataset, TransformSpec.from_dict(json.loads(spec_json)))


def _channel_values(dataset: Dataset, spec: TransformSpec, channel: str, cofactor: float) -> np.ndarray:
    """One channel of an evenly spaced sample of cells after `spec` with `cofactor` for that channel."""
    step = max(1, dataset.n_cells // SCALE_SAMPLE)
    one = replace(spec, features=[channel], linear=[], cofactors={channel: cofactor})
    return transform_events(np.asarray(dataset.events[::step]), dataset.channel_names, one, dataset.spillover)[:, 0]


def cofactor_panel(key: str, dataset: Dataset, spec: TransformSpec) -> None:
    """Suggest cofactors where they differ from the ones in use; the user accepts them channel by channel."""
    if not spec.arcsinh:
        return
    found = _suggestions(key, json.dumps(spec.to_dict(), sort_keys=True), dataset)
    current = {s.channel: spec.cofactors.get(s.channel, spec.cofactor) for s in found}
    shown = [s for s in found if max(s.cofactor, current[s.channel]) >= DIFFERENT * min(s.cofactor, current[s.channel])]
    if not shown:
        return
    markers = {c.name: c.marker for c in dataset.channels}
    with st.expander(f"Suggested cofactors for {len(shown)} channel(s)"):
        st.caption("Each suggestion is 3 × the spread of the channel's negative population (cells below zero, "
                   "mirrored), at least 5, so that population sits in arcsinh's linear part around zero.")
        table = pd.DataFrame({
            "accept": False, "channel": [s.channel for s in shown], "marker": [markers[s.channel] for s in shown],
            "in use": [current[s.channel] for s in shown], "suggested": [s.cofactor for s in shown],
            "cells below 0 (%)": [round(100 * s.negative_share, 1) for s in shown],
        })
        edited = st.data_editor(table, hide_index=True, width="stretch", key=f"cofactors-{key}",
                                disabled=["channel", "marker", "in use", "suggested", "cells below 0 (%)"])
        by_name = {s.channel: s for s in shown}
        channel = st.selectbox("Preview a channel", list(by_name), format_func=lambda n: f"{markers[n]} ({n})",
                               key=f"cofactor-preview-{key}")
        before, after = st.columns(2)
        before.plotly_chart(histogram_figure(_channel_values(dataset, spec, channel, current[channel]),
                                             f"now: arcsinh(x / {current[channel]:g})"), key="cofactor-before")
        after.plotly_chart(histogram_figure(_channel_values(dataset, spec, channel, by_name[channel].cofactor),
                                            f"suggested: arcsinh(x / {by_name[channel].cofactor:g})"),
                           key="cofactor-after")
        accepted = edited.loc[edited["accept"], "channel"].tolist()
        if st.button(f"Use the suggested cofactor for {len(accepted)} channel(s)", disabled=not accepted):
            state.save_transform_spec(key, replace(spec, cofactors={
                **spec.cofactors, **{c: by_name[c].cofactor for c in accepted}}))
            st.rerun()
