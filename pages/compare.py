"""Compare page: which sample is which condition, population shares by condition, and differential abundance."""
import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from cytoauto_core import samples
from cytoauto_core.abundance import by_condition, count_table
from cytoauto_core.differential import Design, differential_abundance
from cytoauto_core.errors import CytoInputError
from cytoauto_core.export import csv_bytes
from cytoauto_core.qc import MarkerReference, sample_qc
from cytoauto_core.storage import read_json
from cytoauto_core.transforms import TransformSpec
from ui import state
from ui.results import SHIPPED_MODELS, load_result

UNPAIRED = "no pairing"

key, dataset = state.current_dataset()
workspace = state.workspace()
st.title("Compare conditions")
if len(dataset.samples) < 2:
    st.info("Comparing conditions needs several samples: on the **Data** page, upload all the study's FCS or CSV "
            "files together (one file per sample), then come back here.")
    st.stop()

st.subheader("Samples and conditions")
try:
    stored = samples.load(workspace, key, dataset.samples)
except CytoInputError as exc:
    st.warning(f"{exc} Fill the table in again below.")
    stored = None
version = st.session_state.setdefault(f"sample-table-version-{key}", 0)


def _store(table: pd.DataFrame) -> None:
    """Save a validated table and show the editor afresh from it."""
    samples.save(workspace, key, table)
    st.session_state[f"sample-table-version-{key}"] = version + 1
    st.rerun()


st.caption("One row per sample: its condition and, when samples belong together (before/after, one patient), "
           "the patient; add any other column (batch, timepoint) by uploading a table or naming it below.")
left, right = st.columns(2)
with left:
    upload = st.file_uploader("Upload a sample table (CSV/TSV with a 'sample' column)", type=["csv", "tsv", "txt"],
                              key=f"sample-table-upload-{key}")
    if upload is not None and st.button("Use this table"):
        try:
            _store(samples.read_table(upload.getvalue(), upload.name, dataset.samples))
        except CytoInputError as exc:
            st.error(str(exc))
with right:
    new_column = st.text_input("Add a column", placeholder="e.g. timepoint")
draft = samples.template(dataset.samples, stored)
if new_column.strip() and new_column.strip() not in draft.columns:
    draft[new_column.strip()] = None
edited = st.data_editor(draft, hide_index=True, width="stretch", disabled=["sample"],
                        key=f"sample-editor-{key}-{version}-{len(draft.columns)}",
                        column_config={c: st.column_config.TextColumn(c) for c in draft.columns if c != "sample"})
if st.button("Save sample table", type="primary"):
    try:
        _store(samples.validate(edited, dataset.samples))
    except CytoInputError as exc:
        st.error(str(exc))
st.download_button("Download the sample table (CSV)", edited.to_csv(index=False), file_name="samples.csv",
                   mime="text/csv")

result = load_result(key)
if result is None:
    st.info("No predicted populations yet: train and apply a model on the **Train** page, or apply a saved model on "
            "the **Results** page.")
    st.stop()
groupings = [] if stored is None else [c for c in stored.columns if c != "sample" and stored[c].notna().any()]
if not groupings:
    st.info("Fill in each sample's condition in the table above and save it to compare conditions.")
    st.stop()

threshold = st.slider("Confidence threshold (cells below it are 'unassigned' and only count in the sample's total)",
                      0.0, 1.0, float(result.meta.get("threshold", 0.5)), 0.05)
cells = result.cells(threshold)
counts = count_table(cells.population_id, cells.names, dataset.sample_ids, dataset.samples)

st.subheader("Per-sample quality")
bundle_meta = next(filter(None, (read_json(root / result.meta["bundle_dir"] / "bundle.json")
                                 for root in (workspace.models_dir, SHIPPED_MODELS))), None)
if bundle_meta is None:
    st.caption("The model's bundle is no longer in the workspace, so marker drift cannot be measured.")
else:
    quality = sample_qc(dataset, cells, TransformSpec.from_dict(bundle_meta["spec"]),
                        MarkerReference.from_params(bundle_meta["params"]))
    flagged = quality.loc[quality["drift_flag"].fillna(False).astype(bool), "sample"].tolist()
    if flagged:
        st.warning(f"{len(flagged)} sample(s) look unlike the data the model was trained on (marker drift out of "
                   f"range): {', '.join(flagged[:3])}{' …' if len(flagged) > 3 else ''}; check their labels first.")
    st.dataframe(quality, hide_index=True, width="stretch")
    st.caption("Drift: how far the sample's worst marker distribution moved from the training data's (mean quantile "
               "shift in units of its 2–98 % range); flagged above the range the training samples themselves show.")

st.subheader("Abundance by condition")
column = st.selectbox("Group samples by", groupings,
                      index=groupings.index("condition") if "condition" in groupings else 0)
long = by_condition(counts, stored, column)
conditions = samples.values(stored, column)
st.plotly_chart(px.box(long, x="population", y="percent", color=column, points="all", hover_data=["sample", "cells"],
                       category_orders={column: conditions},
                       title=f"Share of each sample's cells (%), by {column}"), key="compare-box")
bars = long.assign(bar=long[column].fillna("—") + " · " + long["sample"])
st.plotly_chart(px.bar(bars, x="bar", y="percent", color="population", hover_data=["cells"],
                       category_orders={"bar": list(dict.fromkeys(bars["bar"]))},
                       title=f"Population share per sample, ordered by {column} (%)")
                .update_xaxes(title=None), key="compare-bars")
st.download_button("Download counts and percentages (CSV)", csv_bytes(long), file_name="abundance_by_condition.csv",
                   mime="text/csv")

st.subheader("Differential abundance")
if len(conditions) < 2:
    st.info(f"Column '{column}' holds one value only; give the samples at least two {column}s to compare.")
    st.stop()
c1, c2, c3 = st.columns(3)
target = c1.selectbox(f"Compare {column}", conditions, index=1)
reference = c2.selectbox("with", [v for v in conditions if v != target])
pair = c3.selectbox("paired by", [UNPAIRED] + [c for c in groupings if c != column],
                    index=1 if "patient" in groupings and column != "patient" else 0)
design = Design(column, reference, target, None if pair == UNPAIRED else pair)
st.markdown(f"**{design.sentence()}**")
try:
    da = differential_abundance(counts, stored, design)
except CytoInputError as exc:
    st.error(str(exc))
    st.stop()
for note in da.attrs["notes"]:
    st.caption(note)
st.caption("Per population, a negative-binomial GLM of its cells per sample with the sample's total cells as offset "
           f"{'and one term per ' + design.pair_by + ' ' if design.pair_by else ''}(overdispersion estimated from the "
           "samples); log2 fold change of the share with a 95 % interval; p adjusted by Benjamini–Hochberg.")
tested = da.dropna(subset=["p_adjusted"])
if len(tested):
    volcano = tested.assign(minus_log10_p=-np.log10(tested["p_adjusted"].clip(lower=1e-300)),
                            call=np.where(tested["p_adjusted"] < 0.05, "adjusted p < 0.05", "not significant"))
    st.plotly_chart(px.scatter(volcano, x="log2_fold_change", y="minus_log10_p", color="call", hover_name="population",
                               color_discrete_map={"adjusted p < 0.05": "#d62728", "not significant": "#7f7f7f"},
                               labels={"log2_fold_change": f"log2 fold change ({target} / {reference})",
                                       "minus_log10_p": "−log10 adjusted p"}, title="Volcano plot")
                    .add_hline(y=-np.log10(0.05), line_dash="dot"), key="compare-volcano")
shown = da.rename(columns={"mean_percent_reference": f"mean % {reference}", "mean_percent_target": f"mean % {target}"})
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button("Download the differential abundance table (CSV)", csv_bytes(shown),
                   file_name=f"differential_{target}_vs_{reference}.csv", mime="text/csv")
