"""Explore page: per-channel statistics, distributions before/after the transform, correlations, samples."""
import json

import pandas as pd
import streamlit as st

from cytoauto_core.prep.stats import channel_stats, correlation, per_sample_stats
from cytoauto_core.prep.transforms import TransformSpec
from ui import state
from ui.plots import box_figure, heatmap_figure, histogram_figure
from ui.text import literal

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
markers = dataset.feature_markers(spec.features)


@st.cache_data(max_entries=8, show_spinner="Computing statistics on every cell…")
def _stats(dataset_key: str, spec_json: str) -> pd.DataFrame:
    return channel_stats(x, markers)


@st.cache_data(max_entries=8, show_spinner="Computing correlations…")
def _corr(dataset_key: str, spec_json: str) -> pd.DataFrame:
    return correlation(x, markers)


def _skew_notes(flagged: list[str], spec: TransformSpec) -> list[str]:
    """What to do about skewed channels: a cofactor only helps those arcsinh transforms; the others are used as is."""
    untransformed = set(spec.features) if not spec.arcsinh else set(spec.linear)
    channel = dict(zip(markers, spec.features))
    scaled = [m for m in flagged if channel[m] not in untransformed]
    raw = [m for m in flagged if channel[m] in untransformed]
    why = ("no transform is applied (arcsinh is off on the **Data** page); if these are raw intensities, turn arcsinh "
           "on there" if not spec.arcsinh else
           "scatter and time channels are kept linear, so their skew is the instrument's scale and no cofactor changes it")
    notes = []
    if scaled:
        notes.append(f"Heavy skew or kurtosis in: {literal(', '.join(scaled))}. Check the cofactor for these channels "
                     "on the **Data** page.")
    if raw:
        notes.append(f"Heavy skew or kurtosis in: {literal(', '.join(raw))}. These values are not transformed: {why}.")
    return notes


spec_json = json.dumps(spec.to_dict(), sort_keys=True)
st.title("Explore")
st.caption(f"{dataset.n_cells:,} cells · {len(markers)} feature markers · statistics use every cell")

stats = _stats(key, spec_json)
st.subheader("Per-channel statistics (after the transform)")
st.dataframe(stats, width="stretch", height=min(600, 36 * len(stats) + 40))
for note in _skew_notes(stats.index[stats["heavy_skew"] | stats["heavy_kurtosis"]].tolist(), spec):
    st.info(note)

st.subheader("Distributions: raw and transformed")
chosen = st.multiselect("Channels", markers, default=markers[:3], max_selections=8)
for marker in chosen:
    j = markers.index(marker)
    raw_col = dataset.events[:, dataset.channel_index([spec.features[j]])[0]]
    left, right = st.columns(2)
    left.plotly_chart(histogram_figure(raw_col, f"{marker} — raw"), key=f"raw-{marker}")
    right.plotly_chart(histogram_figure(x[:, j], f"{marker} — transformed"), key=f"tr-{marker}")

st.subheader("Boxplots (transformed)")
box_channels = st.multiselect("Channels for boxplots", markers, default=markers[: min(12, len(markers))])
if box_channels:
    idx = [markers.index(m) for m in box_channels]
    st.plotly_chart(box_figure(x[:, idx], box_channels), key="box")

st.subheader("Correlation")
st.plotly_chart(heatmap_figure(_corr(key, spec_json), "Pearson correlation (transformed)"), key="corr")

if len(dataset.samples) > 1:
    st.subheader("Per-sample medians")
    medians = per_sample_stats(x, dataset.sample_ids, dataset.samples, markers)
    st.plotly_chart(heatmap_figure(medians, "Median per sample", colorscale="Viridis", zmid=None), key="samples")
