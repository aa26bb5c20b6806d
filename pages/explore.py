"""Explore page: per-channel statistics, distributions before/after the transform, correlations, samples."""
import json

import pandas as pd
import streamlit as st

from cytoauto_core.stats import channel_stats, correlation, per_sample_stats
from ui import state
from ui.plots import box_figure, heatmap_figure, histogram_figure
from ui.text import literal

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
markers = [dataset.channels[i].marker for i in dataset.channel_index(spec.features)]


@st.cache_data(max_entries=8, show_spinner="Computing statistics on every cell…")
def _stats(dataset_key: str, spec_json: str) -> pd.DataFrame:
    return channel_stats(x, markers)


@st.cache_data(max_entries=8, show_spinner="Computing correlations…")
def _corr(dataset_key: str, spec_json: str) -> pd.DataFrame:
    return correlation(x, markers)


spec_json = json.dumps(spec.to_dict(), sort_keys=True)
st.title("Explore")
st.caption(f"{dataset.n_cells:,} cells · {len(markers)} feature markers · statistics use every cell")

stats = _stats(key, spec_json)
st.subheader("Per-channel statistics (after the transform)")
st.dataframe(stats, width="stretch", height=min(600, 36 * len(stats) + 40))
flagged = stats.index[stats["heavy_skew"] | stats["heavy_kurtosis"]].tolist()
if flagged:
    st.info(f"Heavy skew or kurtosis in: {literal(', '.join(map(str, flagged)))}. Check the cofactor for these channels.")

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
