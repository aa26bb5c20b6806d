"""Results page: populations on the map, unknown cells, marker heatmap, abundances, validation metrics and
downloads."""
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from cytoauto_core.base.dataset import UNASSIGNED, UNASSIGNED_ID, UNKNOWN, UNKNOWN_ID
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import names_of
from cytoauto_core.io.export import (abundance, csv_bytes, labelled_frame, legend_frame, write_labelled_fcs,
                                     write_labelled_h5ad, write_split_fcs)
from cytoauto_core.tools import metrics
from cytoauto_core.tools.coverage import forced_notice
from cytoauto_core.tools.models.novelty import REJECTION_LEVELS
from cytoauto_core.tools.reference import compare_with_reference
from ui import maps, state, study_panel, unknown_panel
from ui.plots import UNASSIGNED_COLOR, UNKNOWN_COLOR, heatmap_figure, scatter_figure
from ui.quality import bundle_meta, quality_table, show_quality
from ui.results import (apply_bundle, load_result, reference_from_csv, reference_from_workspace, rejection_text,
                        saved_bundles, show_comparison, show_reference)
from ui.text import literal
from ui.widgets import show_error

PREPARED = "results-prepared"  # format → (what made it, file bytes)
FCS_LAYOUTS = {"one file": None, "one per population (zip)": "population", "one per sample (zip)": "sample"}

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
markers = dataset.feature_markers(spec.features)

st.title("Results")
with st.expander("Apply a saved model to this dataset"):
    bundles = saved_bundles()
    if not bundles:
        st.caption("No saved model yet: models you train on the **Train** page are saved in the workspace.")
    else:
        chosen = st.selectbox("Saved model", list(bundles))
        st.caption("Upload new files on the **Data** page, select them there, then apply a model here. "
                   "Channels are matched by name.")
        if st.button("Apply to every cell"):
            with st.spinner("Applying the model…"):
                try:
                    apply_bundle(key, dataset, bundles[chosen])
                except Exception as exc:  # shown as one sentence
                    show_error(exc, "Applying the model")
                else:
                    st.rerun()

result = load_result(key)
if result is None:
    st.info("No results yet: label a few cells on the **Label** page, then train and apply a model on the **Train** "
            "page, or apply a saved model above.")
    st.stop()

meta = result.meta
origin = (f"applied from saved model '{literal(meta['applied_from'])}'" if meta.get("applied_from")
          else f"trained on {meta['n_labelled']:,} labelled cells")
st.caption(f"Model **{literal(meta['model'])}** (bundle {literal(meta['bundle_hash'][:12])}, seed "
           f"{literal(meta['seed'])}), {origin} of {len(meta['class_ids'])} populations.")
t1, t2 = st.columns([3, 1])
threshold = t1.slider("Confidence threshold (cells below it are 'unassigned')", 0.0, 1.0,
                      float(meta.get("threshold", 0.5)), 0.05)
if result.novelty is None:
    rejection = 0.0
    t2.caption("Unknown cells: this model predates unknown detection; retrain it to find them.")
else:
    levels = sorted(set(REJECTION_LEVELS) | {result.rejection})
    rejection = t2.selectbox("Unknown cells", levels, index=levels.index(result.rejection), format_func=rejection_text,
                             help="Cells unlike every population you named are called 'unknown'. The level is the "
                                  "share of cells of your named populations you accept to see called unknown by "
                                  "mistake; changing it needs no retraining.")
picked = maps.map_picker(key, "Map")
coords = picked[1] if picked else None
axis = (f"{picked[2]['method'].upper()} 1", f"{picked[2]['method'].upper()} 2") if picked else ("", "")
cells = result.cells(threshold, None if coords is None else np.asarray(coords), rejection)
unknown = cells.population_id == UNKNOWN_ID
names = cells.names
order = sorted(names)
codes = maps.codes_for(cells.population_id, order)
store = state.label_store(key, dataset)
colors = {p.id: p.color for p in store.populations()}
try:
    clustering = state.cluster_store(key, dataset).current()
except CytoInputError:  # a damaged clustering is the Cluster page's to report
    clustering = None
forced = forced_notice(cells.population_id, names, store.labels(), {p.id: p.name for p in store.populations()},
                       None if clustering is None else clustering.sizes())
if forced:
    st.warning(literal(forced))
    st.page_link("pages/label.py", label="Name more populations on the Label page", icon=":material/ads_click:")
study_panel.panel(key, dataset, result, threshold, rejection)  # a study's working sample: every cell

st.subheader("Populations on the map")
rows = maps.drawn_rows(key, dataset.n_cells, "", None)
if coords is None:
    st.info("Compute a map on the **Map** page to see the populations in 2-D.")
else:
    user = store.labels()
    view = st.radio("Colour by", ["predicted population", "confidence", "changed vs. your labels"], horizontal=True)
    if view == "predicted population":
        fig = scatter_figure(coords, rows, codes, categories=[names[i] for i in order],
                             colors=[colors.get(i, "#888888") for i in order], axis=axis)
    elif view == "confidence":
        fig = scatter_figure(coords, rows, cells.confidence, axis=axis, colorbar_title="Confidence")
    else:
        changed = np.where(user < 0, -1, np.where(user == cells.population_id, 0, 1)).astype(np.int32)
        fig = scatter_figure(coords, rows, changed, categories=["agrees with your label", "changed"],
                             colors=["#2ca02c", "#d62728"], axis=axis)
    st.plotly_chart(fig, key="results-map")

unknown_panel.panel(key, result, unknown, rejection, x, spec, markers, store, coords, rows, axis)

st.subheader("Median expression per population")
assigned = cells.population_id >= 0
if assigned.any():
    q01, q99 = np.quantile(x[:: max(1, dataset.n_cells // 200_000)], [0.01, 0.99], axis=0)
    present = [i for i in order if (cells.population_id == i).any()]
    medians = np.array([np.median(x[cells.population_id == i], axis=0) for i in present])
    scaled = np.clip((medians - q01) / np.where(q99 > q01, q99 - q01, 1), 0, 1)
    fig = heatmap_figure(pd.DataFrame(scaled, index=[names[i] for i in present], columns=markers),
                         "Median arcsinh expression, scaled to each marker's 1–99 % range", colorscale="Viridis",
                         zmid=None)
    fig.update_traces(colorbar_title_text="Scaled median")
    st.plotly_chart(fig, key="results-heatmap")

st.subheader("Abundance per sample")
table = abundance(cells.population_id, names, dataset.sample_ids, dataset.samples)
left, right = st.columns([2, 3])
left.dataframe(table, hide_index=True, width="stretch", column_config={  # counts stay readable beside long names
    "sample": st.column_config.TextColumn("Sample", width="medium"),
    "population": st.column_config.TextColumn("Population", width="medium"),
    "cells": st.column_config.NumberColumn("Cells", format="%d", width="small"),
    "percent": st.column_config.NumberColumn("%", format="%.1f", width="small")})
bar_colors = {names[i]: colors.get(i, "#888888") for i in order} | {UNASSIGNED: UNASSIGNED_COLOR,
                                                                     UNKNOWN: UNKNOWN_COLOR}
right.plotly_chart(px.bar(table, x="sample", y="percent", color="population", color_discrete_map=bar_colors,
                          title="Population share per sample (%)"), key="results-abundance")

if len(dataset.samples) > 1:
    st.subheader("Per-sample quality")
    show_quality(quality_table(dataset, cells, bundle_meta(result)))

st.subheader("Validation")
m1, m2, m3, m4 = st.columns(4)
sil = metrics.silhouette(x, np.where(assigned, cells.population_id, UNASSIGNED_ID), sample_size=10_000, seed=0)
m1.metric("Silhouette (10,000-cell subsample, seed 0)", f"{sil:.3f}")
uncalled = {"Unassigned (low confidence)": cells.population_id == UNASSIGNED_ID}
if result.novelty is not None:
    uncalled["Unknown (unlike every named population)"] = unknown
for column, (label, called) in zip((m2, m3), uncalled.items()):
    column.metric(label, f"{called.mean():.1%}", f"{int(called.sum()):,} cells", delta_color="off", delta_arrow="off")
own_score = meta["metrics"].get(meta["model"], {}).get("macro_f1")
if own_score is not None:
    m4.metric("Held-out macro-F1 on your labels", f"{own_score:.3f}")
if meta["metrics"]:
    show_comparison(meta)

truth_columns = list(dataset.annotations.columns)
if truth_columns:
    column = st.selectbox("Compare with annotation column (ground truth)", truth_columns)
    truth_names = dataset.annotations[column].astype(str).to_numpy()
    pred_codes, truth_codes, vocabulary = metrics.codes_by_name(names_of(cells.population_id, names), truth_names)
    cluster_codes = cells.population_id
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Purity", f"{metrics.purity(cluster_codes, truth_codes):.3f}")
    c2.metric("Adjusted Rand index", f"{metrics.adjusted_rand(cluster_codes, truth_codes):.3f}")
    c3.metric("Accuracy (by name)", f"{metrics.accuracy(pred_codes, truth_codes):.3f}")
    c4.metric("Macro-F1 (by name)", f"{metrics.macro_f1(pred_codes, truth_codes):.3f}")
    st.caption("Ground-truth cells marked unassigned are left out. Accuracy and F1 match populations by name "
               "(case, spaces and underscores ignored).")
    report = metrics.per_population_report(pred_codes, truth_codes, dict(enumerate(vocabulary)))
    st.dataframe(report, hide_index=True, width="stretch")
    conf = metrics.confusion(pred_codes, truth_codes)
    label_of = {**dict(enumerate(vocabulary)), -1: UNASSIGNED}
    conf.index = [label_of.get(i, str(i)) for i in conf.index]
    conf.columns = [label_of.get(i, "other") for i in conf.columns]
    fig = heatmap_figure(conf, "Confusion matrix (rows: truth, columns: prediction)", colorscale="Blues", zmid=None,
                         text=True)
    fig.update_traces(colorbar_title_text="Cells")
    st.plotly_chart(fig, key="results-confusion")

st.subheader("Compare with reference labels")
st.caption("Reference labels for this dataset from a gating CSV or a FlowJo workspace: how many of the reference's "
           "cells the model calls by the same population name, and where the others go.")
predicted = names_of(cells.population_id, names)
from_csv, from_wsp = st.tabs(["Reference CSV", "FlowJo workspace"])
with from_csv:
    reference = reference_from_csv(key, dataset.n_cells)
    if reference is not None:
        show_reference(compare_with_reference(predicted, reference), dataset.n_cells, "reference-csv-confusion")
with from_wsp:
    reference = reference_from_workspace(key, dataset)
    if reference is not None:
        show_reference(compare_with_reference(predicted, reference), dataset.n_cells, "reference-wsp-confusion")

st.subheader("Downloads")
with_features = st.checkbox("Include transformed features in the CSV")
with_proba = st.checkbox("Include per-population probabilities in the CSV")
split = st.radio("FCS export", list(FCS_LAYOUTS), horizontal=True,
                 help="Split: one FCS per population or per sample in a zip, each with event_id (its row in the "
                      "original file) and the legend beside it.")
summary = {
    "dataset": dataset.name, "dataset_hash": key, "cells": dataset.n_cells, "model": meta["model"],
    "bundle_hash": meta["bundle_hash"], "seed": meta["seed"], "threshold": threshold, "rejection": rejection,
    "transform": spec.to_dict(), "populations": {str(k): v for k, v in names.items()},
    "abundance": table.to_dict(orient="records"), "metrics": meta["metrics"],
}
# A prepared file belongs to what made it: dataset, model, threshold, unknown level, map and options. One prepared
# for anything else (another dataset, a newer model) is dropped rather than offered.
made_from = json.dumps([key, meta["bundle_hash"], threshold, rejection, picked[0] if picked else None, with_features,
                        with_proba, split])
prepared = {fmt: found for fmt, found in st.session_state.get(PREPARED, {}).items() if found[0] == made_from}
st.session_state[PREPARED] = prepared
stem = Path(dataset.name).stem


def prepare(fmt: str, make) -> None:
    """Build an export file in a temp folder and keep its bytes with what made it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export.{fmt}"
        make(path)
        prepared[fmt] = (made_from, path.read_bytes())


d1, d2, d3, d4 = st.columns(4)
if d1.button("Prepare CSV"):
    frame = labelled_frame(dataset, cells, x if with_features else None, markers if with_features else None,
                           include_probabilities=with_proba)
    prepared["csv"] = (made_from, csv_bytes(frame))
if "csv" in prepared:
    d1.download_button("Download labelled cells (CSV)", prepared["csv"][1], file_name=f"{stem}_labelled.csv",
                       mime="text/csv", key="dl-csv")
if d2.button("Prepare FCS"):
    by = FCS_LAYOUTS[split]
    prepare("fcs", lambda path: write_labelled_fcs(path, dataset, cells) if by is None
            else write_split_fcs(path, dataset, cells, by, colors))
if "fcs" in prepared:
    by = FCS_LAYOUTS[split]
    d2.download_button(f"Download labelled cells ({'FCS' if by is None else 'zip of FCS'})", prepared["fcs"][1],
                       file_name=f"{stem}_labelled.fcs" if by is None else f"{stem}_by_{by}.zip",
                       mime="application/octet-stream" if by is None else "application/zip", key="dl-fcs")
if d3.button("Prepare AnnData (.h5ad)"):
    obsm = {}
    for name, info in maps.stored_maps(key).items():
        stored = state.workspace().load_array(key, name)
        if stored is not None and len(stored[0]) == dataset.n_cells:
            base = f"X_{info['method']}"
            obsm[base if base not in obsm else f"{base}_{len(obsm) + 1}"] = np.asarray(stored[0])
    provenance = {k: meta[k] for k in ("model", "bundle_hash", "seed", "n_labelled", "applied_from") if k in meta}
    prepare("h5ad", lambda path: write_labelled_h5ad(
        path, dataset, spec, cells, x=x, user_labels=store.labels(), colors=colors, maps=obsm,
        provenance={**provenance, "threshold": threshold, "rejection": rejection, "dataset_hash": key}))
if "h5ad" in prepared:
    d3.download_button("Download AnnData (.h5ad)", prepared["h5ad"][1], file_name=f"{stem}_labelled.h5ad",
                       mime="application/x-hdf5", key="dl-h5ad")
d4.download_button("Download summary (JSON)", json.dumps(summary, indent=1, default=str),
                   file_name=f"{stem}_summary.json", mime="application/json")
d4.download_button("Download population legend (CSV)", legend_frame(cells, colors).to_csv(index=False),
                   file_name=f"{stem}_legend.csv", mime="text/csv", key="dl-legend")
