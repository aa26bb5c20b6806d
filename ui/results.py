"""The stored result of the last training on a dataset (per-cell probabilities plus what made them), and what the Train
and Results pages show of it: the models' held-out scores and the calls against uploaded reference labels."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.base.storage import read_json
from cytoauto_core.io.flowjo_dataset import dataset_gate_labels, dataset_gates, gate_names
from cytoauto_core.run.train_command import label_columns
from cytoauto_core.store.labels import read_label_file
from cytoauto_core.tools.models.bundle import ModelBundle, Prediction, call_cells, load_bundle, predict_dataset
from cytoauto_core.tools.models.evaluation import SCORE_NAMES, held_out_text, readable_scores
from cytoauto_core.tools.models.novelty import is_unknown
from cytoauto_core.tools.recommendation import EVIDENCE
from cytoauto_core.tools.reference import ReferenceComparison, reference_from_table
from ui import state
from ui.plots import heatmap_figure
from ui.text import literal
from ui.upload import saved_upload

SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"

RESULT = "result-proba"


@dataclass
class StoredResult:
    """Probabilities (n_cells × n_classes, memory-mapped), each cell's novelty when the model has unknown detection
    (stored as one more column, so both are written in one file), and metadata of the applied model."""

    stored: np.ndarray
    meta: dict

    @property
    def class_ids(self) -> np.ndarray:
        return np.asarray(self.meta["class_ids"])

    @property
    def proba(self) -> np.ndarray:
        return self.stored[:, : len(self.class_ids)]

    @property
    def novelty(self) -> np.ndarray | None:
        return self.stored[:, -1] if self.stored.shape[1] > len(self.class_ids) else None

    @property
    def rejection(self) -> float:
        """The share of known cells the model was applied with calling unknown (0 without unknown detection)."""
        return float(self.meta.get("rejection", 0.0)) if self.novelty is not None else 0.0

    @property
    def names(self) -> dict[int, str]:
        return {int(i): n for i, n in zip(self.meta["class_ids"], self.meta["class_names"])}

    def cells(self, threshold: float, coords: np.ndarray | None = None,
              rejection: float | None = None) -> LabelledCells:
        """Per-cell labels: the most probable population, unassigned (-1) below `threshold`, unknown (-2) where the
        novelty is above 1 − `rejection` (the applied level when None)."""
        proba, novelty = np.asarray(self.proba), self.novelty
        level = self.rejection if rejection is None else rejection
        unknown = None if novelty is None else is_unknown(novelty, level)
        labels, confidence = call_cells(proba, self.class_ids, threshold, unknown)
        return LabelledCells(labels.astype(np.int32), self.names, confidence, proba, coords,
                             None if novelty is None else np.asarray(novelty, np.float32))


def rejection_text(level: float) -> str:
    """How the app names an unknown-detection level."""
    return "off" if level <= 0 else f"{100 * level:g} % of known cells"


def load_result(key: str) -> StoredResult | None:
    found = state.workspace().load_array(key, RESULT)
    return None if found is None else StoredResult(*found)


def save_result(key: str, prediction: Prediction, *, model: str, bundle_hash: str, bundle_dir: str,
                threshold: float, rejection: float, seed: int, n_labelled: int, metrics: dict, seconds: float,
                **extra) -> None:
    """Store a model's per-cell probabilities (and novelty, as a last column) as the dataset's result, with what
    made them."""
    stored = prediction.probabilities.astype(np.float32, copy=False)
    if prediction.novelty is not None:
        stored = np.column_stack([stored, prediction.novelty.astype(np.float32, copy=False)])
    state.workspace().save_array(key, RESULT, stored, {
        "model": model, "bundle_hash": bundle_hash, "bundle_dir": bundle_dir, "class_ids": prediction.class_ids,
        "class_names": prediction.class_names, "threshold": threshold, "rejection": rejection, "seed": seed,
        "n_labelled": n_labelled, "metrics": metrics, "seconds": seconds, "trained_at": time.time(), **extra,
    })


def saved_bundles() -> dict[str, Path]:
    """Model bundles in the workspace and shipped in models/: display name → folder."""
    found = {}
    for root in (state.workspace().models_dir, SHIPPED_MODELS):
        for meta_path in sorted(root.glob("*/bundle.json")):
            meta = read_json(meta_path)
            found[f"{meta['name']} ({meta['kind']}, {meta_path.parent.name})"] = meta_path.parent
    return found


@st.cache_resource(max_entries=8, show_spinner="Loading the model bundle…")
def _bundle(folder: str, bundle_hash: str) -> ModelBundle:
    """A verified bundle, loaded once per content hash and shared read-only (predict only, never fit)."""
    return load_bundle(folder)


def apply_bundle(key: str, dataset: Dataset, folder: Path) -> None:
    """Apply a saved bundle to every cell of a dataset and store it as the dataset's result."""
    meta = read_json(folder / "bundle.json")
    bundle = _bundle(str(folder), meta["bundle_hash"])
    prediction = predict_dataset(bundle, dataset.events, dataset.channel_names, dataset.spillover)
    save_result(key, prediction, model=meta["kind"], bundle_hash=meta["bundle_hash"], bundle_dir=folder.name,
                threshold=0.5, rejection=0.0 if bundle.novelty is None else bundle.novelty.rejection,
                seed=meta["seed"], n_labelled=0, metrics=meta.get("metrics", {}), seconds=0.0,
                applied_from=meta["name"])


def show_comparison(meta: dict) -> None:
    """The stored models' scores on held-out labels, the applied model first, with how they were held out, what
    scoring the applied one cost and, where the applied model is VIME, the evidence it is recommended on."""
    table = pd.DataFrame(meta["metrics"]).T
    applied = meta["model"]
    shown = readable_scores(table, applied).style.format(precision=3)
    if SCORE_NAMES["seconds"] in shown.data:
        shown = shown.format("{:.1f}", subset=[SCORE_NAMES["seconds"]])
    st.dataframe(shown, width="stretch")
    fits = int(table["fits"].iloc[0]) if "fits" in table else 0
    held_out = held_out_text(fits) if fits else str(table["scheme"].iloc[0])
    if "applied_from" in meta:
        said = f"Scores of the saved model on the labels it was trained with, not on this dataset, by {held_out}."
    elif applied in table.index and "seconds" in table:
        said = (f"Each model is scored on labelled cells it did not see, by {held_out}. Scoring {applied} on them took "
                f"{float(table.loc[applied, 'seconds']):.1f} s of the {float(meta['seconds']):.1f} s of training.")
    else:
        said = (f"Each model is scored on labelled cells it did not see, by {held_out}. {applied} was not scored in "
                "this run: train again to see its score beside these.")
    st.caption(literal(said))
    if fits > 1 and "applied_from" not in meta:
        st.caption("With few labels each model is scored on a handful of held-out labelled cells per population, "
                   "every population counted equally, so these scores differ by chance more than the models do.")
    if applied == "VIME":
        st.caption(f"Why VIME is applied: {literal(EVIDENCE)}")


def reference_from_csv(key: str, n_cells: int) -> np.ndarray | None:
    """Per-cell reference names from an uploaded CSV, its cell-index and population columns picked by the user (first
    guessed as the command line guesses them); None until a usable file is given."""
    upload = st.file_uploader("Reference labels (CSV)", type=["csv"], key=f"reference-csv-{key}",
                              help="Any CSV with one row per reference cell, such as a gating export: choose its "
                                   "cell-index and population columns.")
    if upload is None:
        return None
    try:
        frame = _read_once(upload)
        guess = label_columns(frame.columns)
        columns = list(frame.columns)
        c1, c2, c3 = st.columns(3)
        cell = c1.selectbox("Cell index column", columns, index=columns.index(guess.cell), key=f"reference-cell-{key}")
        population = c2.selectbox("Reference population column", columns, index=columns.index(guess.population),
                                  key=f"reference-population-{key}")
        first = c3.radio("First cell is", [0, 1], index=guess.first_index, horizontal=True,
                         format_func=lambda b: f"{b} ({'Python, this app' if b == 0 else 'R, FlowJo'})",
                         key=f"reference-first-{key}")
        return reference_from_table(frame, cell, population, n_cells, first)
    except CytoInputError as exc:
        st.error(literal(exc))
        return None


def reference_from_workspace(key: str, dataset: Dataset) -> np.ndarray | None:
    """Per-cell reference names from the chosen gates of an uploaded FlowJo workspace, applied to this dataset's files
    as the Label page's import applies them; None until gates are chosen."""
    upload = st.file_uploader("FlowJo workspace (.wsp) describing this dataset's FCS files", type=["wsp"],
                              key=f"reference-wsp-{key}")
    if upload is None:
        return None
    held = st.session_state.setdefault(f"reference-gates-{key}", {})  # this upload's gates, the last gating
    try:
        if held.get("file_id") != upload.file_id:
            with saved_upload(upload) as path:
                listed = dataset_gates(path, dataset)
            held.clear()
            held.update(file_id=upload.file_id, listed=listed)
        chosen = st.multiselect("Gates that are reference populations", held["listed"].gates,
                                default=held["listed"].leaves, key=f"reference-chosen-{key}",
                                help="The leaf gates by default. A cell in two chosen gates is left out.")
        if not chosen:
            return None
        if held.get("chosen") != chosen:
            with st.spinner("Applying the gates…"), saved_upload(upload) as path:
                held.update(names=gate_names(dataset_gate_labels(path, dataset, chosen)), chosen=chosen)
        return held["names"]
    except CytoInputError as exc:
        st.error(literal(exc))
        return None


def show_reference(comparison: ReferenceComparison, n_cells: int, chart_key: str) -> None:
    """Agreement and precision of the calls on the reference cells, per population and as a confusion matrix."""
    if comparison.reference_cells == 0:
        st.warning("The reference names none of this dataset's cells: nothing to compare.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Agreement with the reference", f"{comparison.agreement:.1%}",
              help="Share of the reference's cells the model calls by the same name.")
    c2.metric("Precision of the calls", "–" if np.isnan(comparison.precision) else f"{comparison.precision:.1%}",
              help="Of the reference cells the model calls a named population, the share called right.")
    c3.metric("Reference cells", f"{comparison.reference_cells:,}", f"of {n_cells:,} cells", delta_color="off",
              delta_arrow="off")
    st.caption("Only cells the reference names are scored. Names match ignoring case, spaces and underscores; a cell "
               "called unassigned or unknown counts against agreement, not against precision.")
    table = comparison.per_population.rename(columns=str.capitalize)
    st.dataframe(table.style.format({"Agreement": "{:.1%}", "Precision": "{:.1%}"}, na_rep="–"), hide_index=True,
                 width="stretch")
    fig = heatmap_figure(comparison.confusion, "Confusion matrix (rows: reference, columns: the model's calls)",
                         colorscale="Blues", zmid=None)
    fig.update_traces(texttemplate="%{z:,}", colorbar_title_text="Cells")
    st.plotly_chart(fig, key=chart_key)


def _read_once(upload) -> pd.DataFrame:
    """An uploaded reference CSV as a table, parsed once per upload rather than on every rerun of the page."""
    held = st.session_state.get("reference-frame")
    if held is None or held[0] != upload.file_id:
        held = (upload.file_id, read_label_file(upload, upload.name))
        st.session_state["reference-frame"] = held
    return held[1]


