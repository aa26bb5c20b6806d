"""Per-sample quality shared by the Results and Compare pages: the model's bundle, the QC table and its display."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.base.storage import read_json
from cytoauto_core.prep.qc import MarkerReference, sample_qc
from cytoauto_core.prep.transforms import TransformSpec
from ui import state
from ui.results import SHIPPED_MODELS, StoredResult
from ui.text import literal

NO_BUNDLE = "The model's bundle is no longer in the workspace, so marker drift cannot be measured."


def bundle_meta(result: StoredResult) -> dict | None:
    """bundle.json of the model that made `result` (workspace or shipped models), or None when it is gone."""
    return next(filter(None, (read_json(root / result.meta["bundle_dir"] / "bundle.json")
                              for root in (state.workspace().models_dir, SHIPPED_MODELS))), None)


def quality_table(dataset: Dataset, cells: LabelledCells, meta: dict | None) -> pd.DataFrame | None:
    """qc.sample_qc's table against the bundle's training data, or None without a bundle."""
    if meta is None:
        return None
    return sample_qc(dataset, cells, TransformSpec.from_dict(meta["spec"]), MarkerReference.from_params(meta["params"]))


def show_quality(quality: pd.DataFrame | None) -> None:
    """The table with the flagged samples named above it, or why there is none."""
    if quality is None:
        st.caption(NO_BUNDLE)
        return
    flagged = quality.loc[quality["drift_flag"].fillna(False).astype(bool), "sample"].tolist()
    if flagged:
        st.warning(f"{len(flagged)} sample(s) look unlike the data the model was trained on (marker drift out of "
                   f"range): {literal(', '.join(flagged[:3]))}{' …' if len(flagged) > 3 else ''}; check their labels first.")
    st.dataframe(quality, hide_index=True, width="stretch")
    st.caption("Drift: how far the sample's worst marker distribution moved from the training data's (mean quantile "
               "shift in units of its 2–98 % range); flagged above the range the training samples themselves show.")
