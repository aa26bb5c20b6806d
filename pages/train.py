"""Train page: compare VIME with baselines on the user's labels, then label every cell in the background."""
import pandas as pd
import streamlit as st

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.base.labelled import MIN_LABELS_FOR_TRAINING
from cytoauto_core.io.marker_table import MarkerTable
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.tools.models.evaluation import held_out_fits, held_out_text
from cytoauto_core.tools.models.novelty import DEFAULT_REJECTION, REJECTION_LEVELS
from cytoauto_core.tools.models.vime import VIMEParams, network_weight_for
from cytoauto_core.tools.recommendation import recommend_model
from cytoauto_core.tools.table_training import table_population_ids
from cytoauto_core.tools.training import DEFAULT_COMPARISON, MODEL_NAMES, TrainingRequest, train_and_apply
from ui import state, study_panel
from ui.results import load_result, rejection_text, save_result, show_comparison
from ui.text import literal
from ui.widgets import job_panel

VIME_PARTS = """
VIME makes its call from three parts, combined as a weighted geometric mean of their probabilities:
1. **The network** (VIME: an encoder pretrained by masked self-supervision on every cell, then a predictor trained on
   your labels and then also on its own confident predictions, with consistency over masked copies and entropy
   minimisation on unlabelled cells) — the part that learns the shape of populations from the unlabelled cells.
2. **The linear pair** (LDA and logistic regression on your labels, their logits weighted by their shares).
3. **The booster** (XGBoost with vector leaves on your labels; soft probabilities from 30 shallow rounds): it leads
   where it is sure, and the other two decide where it is not.

The network's weight grows with your labels: {0} at 5 labels per population, {1} at 10, {2} from 20. The rest is
split between LDA, logistic regression and the booster on your own labels: each labelled cell is predicted by experts
fitted without it, and the splits are averaged, each weighted by how likely it makes those predictions (shown
after training). The network picks its pseudo-labels at the population shares estimated among your unlabelled cells
(so a rare population's pseudo-labels are cells that look like it, not every cell it might be), and still sees every
population equally often. The network's weights were chosen on eight labelled reference
data sets and checked on each set with that set left out of the choice.
""".format(*(f"{network_weight_for(n):g}" for n in (5, 10, 20)))

# what scoring VIME on held-out labels cost, as train_and_apply times it (the comparison's `seconds`), on the demo with
# the page's defaults on a 2-core machine shared with other work (load 3–5), TensorFlow already started
SCORING_COST = ("For VIME each of these fits takes about as long as that one: on the demo (20,000 cells) on a busy "
                "2-core machine, scoring it took 76 s of the 119 s of training with 10 labels for each of 14 "
                "populations (3 fits), and 18 s of 45 s with 1,317 labels for each of 3 (1 fit).")


def marker_table(ws: Workspace, key: str, counts: pd.DataFrame) -> MarkerTable | None:
    """The dataset's marker table if it has one and the user trains with it (a checkbox, on by default), said above
    the Train button with how many of its populations have clicked cells; None otherwise."""
    try:
        table = ws.load_marker_table(key)
    except CytoInputError as exc:
        st.warning(literal(exc))
        return None
    if table is None:
        return None
    ids = table_population_ids(table, dict(zip(counts["id"], counts["name"])))
    cells = dict(zip(counts["id"], counts["cells"]))
    clicked = sum(cells.get(i, 0) > 0 for i in ids)
    st.markdown(f"**Marker table:** {len(table.populations)} populations; {clicked} "
                f"{'has' if clicked == 1 else 'have'} clicked cells.")
    missing = [p for p, i in zip(table.populations, ids) if i < 0]
    if missing:
        st.warning(literal(f"The marker table's {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not among "
                           "your populations any more, so it is not used: press Use the table's populations on the "
                           "Label page's Marker table tab to add them again."))
        return None
    use = st.checkbox("Use the marker table", value=True,
                      help="Train with the table beside your clicks: it names the cells of its populations, and "
                           "your clicked cells refine that call. Without it, only your clicks train the model.")
    return table if use else None


key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
store = state.label_store(key, dataset)
ws = state.workspace()

st.title("Train")
study_panel.train_note(dataset)
counts = store.counts()
labels = store.labels()
usable = counts[counts["enough_for_training"]]
st.markdown(f"**{int(counts['cells'].sum()):,} labelled cells** in {len(counts)} population(s); "
            f"{len(usable)} have at least {MIN_LABELS_FOR_TRAINING} labels and take part.")
if not counts.empty:
    st.dataframe(counts[["name", "cells", "enough_for_training"]], hide_index=True)
table = marker_table(ws, key, counts)
if len(usable) < 2 and table is None:
    st.info(f"Label at least two populations with {MIN_LABELS_FOR_TRAINING} or more cells each on the **Label** page.")
    st.stop()

recommended = recommend_model(usable["cells"].tolist()) if len(usable) else None  # no clicks: the table trains
if recommended is not None:
    st.markdown(f"**Recommended: {recommended.model}.** {recommended.reason}")
with st.form("train"):
    compare = st.multiselect(
        "Models to score beside the applied one", MODEL_NAMES, default=list(DEFAULT_COMPARISON),
        help="Each is scored on labelled cells it did not see, as the applied model is.")
    c1, c2, c3, c4 = st.columns(4)
    apply_model = c1.selectbox("Model to apply to every cell", MODEL_NAMES,
                               index=MODEL_NAMES.index(recommended.model if recommended else "VIME"))
    threshold = c2.slider("Confidence threshold (below: unassigned)", 0.0, 1.0, 0.5, 0.05)
    rejection = c3.selectbox(
        "Unknown cells", REJECTION_LEVELS, index=REJECTION_LEVELS.index(DEFAULT_REJECTION), format_func=rejection_text,
        help="Cells unlike every population you named (further from each one's labelled cells than nearly all "
             "of its own cells) are called 'unknown'. The level is the share of cells of your named populations "
             "you accept to see called unknown by mistake; you can change it on the Results page without retraining.")
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
    with st.expander("VIME settings and what each part does"):
        st.markdown(VIME_PARTS)
        d = VIMEParams()
        v1, v2, v3 = st.columns(3)
        vime = {
            "rounds": v1.number_input("self-training rounds", 1, 10, d.rounds,
                                      help="The first round learns from your labels; each later one also from the "
                                           "network's own confident predictions of the round before."),
            "pseudo_threshold": v2.number_input("pseudo-label confidence", 0.5, 1.0, d.pseudo_threshold, 0.05),
            "p_m": v3.number_input("mask probability p_m", 0.05, 0.9, d.p_m, 0.05,
                                   help="Share of marker values replaced in self-supervision and consistency."),
            "beta": v1.number_input("consistency weight beta", 0.0, 10.0, d.beta, 0.5),
            "entropy_weight": v2.number_input("entropy weight", 0.0, 5.0, d.entropy_weight, 0.05),
        }
    go = st.form_submit_button("Train and apply", type="primary")
if len(usable) >= 2:
    fits = held_out_fits(int(usable["cells"].min()), TrainingRequest.folds)
    st.caption(f"The applied model is scored on your held-out labels too, by {held_out_text(fits)}: it is fitted "
               f"{fits} more time{'s' if fits > 1 else ''} than the one fit on all labels. {SCORING_COST}")

job_key = f"train-{key}"
if go:
    request = TrainingRequest(compare=compare, apply=apply_model, vime=vime, seed=int(seed), threshold=threshold,
                              rejection=rejection, table=table)
    names = dict(zip(counts["id"], counts["name"]))
    snapshot = labels.copy()

    def work(progress, should_stop):
        outcome = train_and_apply(dataset, x, spec, snapshot, names, request, ws.models_dir, progress, should_stop)
        save_result(key, outcome.prediction, model=request.apply, bundle_hash=outcome.bundle_hash,
                    bundle_dir=outcome.bundle_dir.name, threshold=request.threshold, rejection=request.rejection,
                    seed=request.seed, n_labelled=outcome.n_labelled, metrics=outcome.scores.to_dict(orient="index"),
                    seconds=outcome.seconds, vime=request.vime, weights=outcome.weights,
                    provenance=outcome.provenance)
        return outcome.seconds

    state.job_manager().start(job_key, "Training", work)

job = state.job_manager().get(job_key)
job_panel(job)
if job is not None and job.status == "done":
    st.success(f"Trained and applied in {job.result:.1f} s. See the **Results** page.")

result = load_result(key)
if result is not None:
    if "applied_from" in result.meta:
        st.caption(f"Current result: the saved model '{literal(result.meta['applied_from'])}' (bundle "
                   f"{literal(result.meta['bundle_hash'][:12])}), applied on the **Results** page; train here to compare "
                   "models on your labels.")
    else:
        for sentence in result.meta.get("provenance", []):
            st.info(literal(sentence))
        if result.meta["metrics"]:
            st.subheader("Model comparison on your labels")
            show_comparison(result.meta)
        else:  # trained on a marker table with clicks in fewer than two populations: nothing to hold out
            st.caption(f"No model was scored on held-out labels: that needs two populations with "
                       f"{MIN_LABELS_FOR_TRAINING} or more clicked cells each.")
        st.caption(literal(f"Seed {result.meta['seed']} · applied model: {result.meta['model']} (bundle "
                           f"{result.meta['bundle_hash'][:12]})"))
        if result.meta.get("weights"):
            st.caption(literal(f"{result.meta['model']} weighs its parts: {result.meta['weights']}."))
