"""Compare page: which sample is which condition, population shares by condition, and differential abundance."""
import pandas as pd
import streamlit as st

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io.export import csv_bytes
from cytoauto_core.study import samples
from cytoauto_core.study.abundance import by_condition, count_table
from cytoauto_core.study.differential import Design, confounding, differential_abundance
from cytoauto_core.study.report import (ModelSummary, abundance_bars, abundance_box, method_sentence, study_report,
                                        volcano)
from ui import state, study_panel
from ui.quality import NO_BUNDLE, bundle_meta, quality_table, show_quality
from ui.results import load_result
from ui.text import literal

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
    st.warning(f"{literal(exc)} Fill the table in again below.")
    stored = None
version = st.session_state.setdefault(f"sample-table-version-{key}", 0)


def _store(table: pd.DataFrame) -> None:
    """Save a validated table and show the editor afresh from it."""
    samples.save(workspace, key, table)
    st.session_state[f"sample-table-version-{key}"] = version + 1
    st.rerun()


st.caption("One row per sample: the short name plots give it, its condition and, when samples belong together "
           "(before/after, one patient), the patient; add any other column (batch, run day, timepoint) by uploading a "
           "table, naming it below or filling it from a file keyword.")
left, right = st.columns(2)
with left:
    upload = st.file_uploader("Upload a sample table (CSV/TSV with a 'sample' column)", type=["csv", "tsv", "txt"],
                              key=f"sample-table-upload-{key}")
    if upload is not None and st.button("Use this table"):
        try:
            _store(samples.read_table(upload.getvalue(), upload.name, dataset.samples))
        except CytoInputError as exc:
            st.error(literal(exc))
with right:
    new_column = st.text_input("Add a column", placeholder="e.g. timepoint")
draft = samples.template(dataset.samples, stored)
if new_column.strip() and new_column.strip() not in draft.columns:
    draft[new_column.strip()] = None
edited = st.data_editor(draft, hide_index=True, width="stretch", disabled=["sample"], placeholder="",
                        key=f"sample-editor-{key}-{version}-{len(draft.columns)}",
                        column_config={**{c: st.column_config.TextColumn(c) for c in draft.columns if c != "sample"},
                                       samples.DISPLAY: st.column_config.TextColumn(
                                           samples.DISPLAY, help="How plots and the report name the sample; "
                                           "shortened from the file name until you change it")})
if st.button("Save sample table", type="primary"):
    try:
        _store(samples.validate(edited, dataset.samples))
    except CytoInputError as exc:
        st.error(literal(exc))
st.download_button("Download the sample table (CSV)", edited.to_csv(index=False), file_name="samples.csv",
                   mime="text/csv")
keywords = samples.load_keywords(workspace, key, dataset)
choices = samples.keyword_choices(keywords, dataset.samples)
if choices:
    with st.expander("Fill a column from a file keyword"):
        first = keywords[dataset.samples[0]]
        k1, k2 = st.columns(2)
        keyword = k1.selectbox("File keyword", choices, format_func=lambda k: f"{k} (e.g. {first[k]})")
        target = k2.selectbox("Into column", [c for c in edited.columns if c != "sample"])
        if st.button("Fill in"):
            try:
                _store(samples.validate(samples.fill_from_keyword(edited, target, keyword, keywords), dataset.samples))
            except CytoInputError as exc:
                st.error(literal(exc))

result = load_result(key)
if result is None:
    st.info("No predicted populations yet: train and apply a model on the **Train** page, or apply a saved model on "
            "the **Results** page.")
    st.stop()
groupings = [] if stored is None else samples.groupings(stored)
if not groupings:
    st.info("Fill in each sample's condition in the table above and save it to compare conditions.")
    st.stop()

whole = study_panel.whole_study_summary(dataset, result)  # a working sample's exact counts of its whole study
threshold = st.slider("Confidence threshold (cells below it are 'unassigned' and only count in the sample's total)",
                      0.0, 1.0, float((whole or result.meta).get("threshold", 0.5)), 0.05)
cells = result.cells(threshold)
counts, source = study_panel.compare_counts(dataset, result, threshold)
if counts is None:
    counts = count_table(cells.population_id, cells.names, dataset.sample_ids, dataset.samples)
if source:
    st.caption(source)

st.subheader("Per-sample quality")
meta = bundle_meta(result)
quality = quality_table(dataset, cells, meta)
show_quality(quality)

st.subheader("Abundance by condition")
column = st.selectbox("Group samples by", groupings,
                      index=groupings.index("condition") if "condition" in groupings else 0)
long = by_condition(counts, stored, column)
conditions = samples.values(stored, column)
names = samples.short_names(dataset.samples, stored)
st.plotly_chart(abundance_box(long, column, names), key="compare-box")
st.plotly_chart(abundance_bars(long, column, names), key="compare-bars")
st.download_button("Download counts and percentages (CSV)", csv_bytes(long), file_name="abundance_by_condition.csv",
                   mime="text/csv")

st.subheader("Differential abundance")
if len(conditions) < 2:
    st.info(literal(f"Column '{column}' holds one value only; give the samples at least two {column}s to compare."))
    st.stop()
c1, c2, c3 = st.columns(3)
target = c1.selectbox(f"Compare {literal(column)}", conditions, index=1)
reference = c2.selectbox("with", [v for v in conditions if v != target])
pair = c3.selectbox("paired by", [UNPAIRED] + [c for c in groupings if c != column],
                    index=1 if "patient" in groupings and column != "patient" else 0)
design = Design(column, reference, target, None if pair == UNPAIRED else pair)
st.markdown(f"**{literal(design.sentence())}**")
for warning in confounding(design, stored):
    st.warning(literal(warning))
try:
    da = differential_abundance(counts, stored, design)
except CytoInputError as exc:
    st.error(literal(exc))
    st.stop()
for note in da.attrs["notes"]:
    st.caption(literal(note))
st.caption(literal(method_sentence(design)))
figure = volcano(da, design)
if figure is not None:
    st.plotly_chart(figure, key="compare-volcano")
shown = da.rename(columns={"mean_percent_reference": f"mean % {reference}", "mean_percent_target": f"mean % {target}"})
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button("Download the differential abundance table (CSV)", csv_bytes(shown),
                   file_name=f"differential_{target}_vs_{reference}.csv", mime="text/csv")

st.subheader("Study report")
st.caption("One HTML file with the design, abundance plots, this table and volcano plot, per-sample quality and the "
           "model's parameters, bundle hash and seed; it opens in any browser without a server or internet.")
st.download_button("Download the study report (HTML)",
                   lambda: study_report(dataset.name, stored, counts, design, quality,
                                        ModelSummary.from_result(result.meta, meta, threshold), NO_BUNDLE),
                   file_name=f"study_report_{target}_vs_{reference}.html", mime="text/html", on_click="ignore",
                   key="compare-report")
