"""Train page: compare VIME with baselines on the user's labels, then label every cell in the background."""
import pandas as pd
import streamlit as st

from cytoauto_core.labels import MIN_LABELS_FOR_TRAINING
from cytoauto_core.models.bundle import valley_gate_table
from cytoauto_core.models.vime import TEACHERS, VIMEParams
from cytoauto_core.storage import read_json
from cytoauto_core.training import MODEL_NAMES, TrainingRequest, train_and_apply
from ui import state
from ui.results import bundle_folder, load_result, save_result
from ui.widgets import job_panel

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
store = state.label_store(key, dataset)
ws = state.workspace()

st.title("Train")
counts = store.counts()
labels = store.labels()
usable = counts[counts["enough_for_training"]]
st.markdown(f"**{int(counts['cells'].sum()):,} labelled cells** in {len(counts)} population(s); "
            f"{len(usable)} have at least {MIN_LABELS_FOR_TRAINING} labels and take part.")
if not counts.empty:
    st.dataframe(counts[["name", "cells", "enough_for_training"]], hide_index=True)
if len(usable) < 2:
    st.info(f"Label at least two populations with {MIN_LABELS_FOR_TRAINING} or more cells each on the **Label** page.")
    st.stop()

with st.form("train"):
    compare = st.multiselect("Models to compare", MODEL_NAMES, default=list(MODEL_NAMES))
    c1, c2, c3 = st.columns(3)
    apply_model = c1.selectbox("Model to apply to every cell", MODEL_NAMES)
    threshold = c2.slider("Confidence threshold (below: unassigned)", 0.0, 1.0, 0.5, 0.05)
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0)
    with st.expander("VIME settings"):
        d = VIMEParams()
        v1, v2, v3, v4 = st.columns(4)
        vime = {
            "p_m": v1.number_input("mask probability p_m", 0.05, 0.9, d.p_m, 0.05),
            "alpha": v2.number_input("reconstruction weight alpha", 0.0, 10.0, d.alpha, 0.5),
            "beta": v3.number_input("consistency weight beta", 0.0, 10.0, d.beta, 0.5),
            "k": v4.number_input("corrupted copies K", 1, 10, d.k),
            "entropy_weight": v1.number_input("entropy weight", 0.0, 5.0, d.entropy_weight, 0.05),
            "rounds": v2.number_input("self-training rounds", 1, 10, d.rounds),
            "pretrain_steps": v3.number_input("self-supervised steps", 0, 5000, d.pretrain_steps, 50),
            "semi_steps": v4.number_input("semi-supervised steps per round", 50, 5000, d.semi_steps, 50),
            "pseudo_threshold": v1.number_input("pseudo-label confidence", 0.5, 1.0, d.pseudo_threshold, 0.05),
            "teacher": v2.selectbox(
                "teacher (first pseudo-labels)", TEACHERS, index=TEACHERS.index(d.teacher),
                help="cascade: cells that LDA and XGBoost agree on train a booster that guides the network (best in "
                     "the benchmark); lda or xgboost: one model guides it; none: the network learns from your labels "
                     "alone."),
            "valley_gates": v3.checkbox(
                "valley gates", d.valley_gates,
                help="With the cascade teacher: where it hesitates between two populations, settle those cells at "
                     "the density valley of the marker that best separates them, as a gate would, and train the "
                     "teacher again."),
        }
    go = st.form_submit_button("Train and apply", type="primary")

job_key = f"train-{key}"
if go:
    request = TrainingRequest(compare=compare, apply=apply_model, vime=vime, seed=int(seed), threshold=threshold)
    names = dict(zip(counts["id"], counts["name"]))
    snapshot = labels.copy()

    def work(progress, should_stop):
        outcome = train_and_apply(dataset, x, spec, snapshot, names, request, ws.models_dir, progress, should_stop)
        save_result(key, outcome.prediction, model=request.apply, bundle_hash=outcome.bundle_hash,
                    bundle_dir=outcome.bundle_dir.name, threshold=request.threshold, seed=request.seed,
                    n_labelled=outcome.n_labelled, metrics=outcome.scores.to_dict(orient="index"),
                    seconds=outcome.seconds, vime=request.vime)
        return outcome.seconds

    state.job_manager().start(job_key, "Training", work)

job = state.job_manager().get(job_key)
job_panel(job)
if job is not None and job.status == "done":
    st.success(f"Trained and applied in {job.result:.1f} s. See the **Results** page.")

result = load_result(key)
if result is not None:
    if "applied_from" in result.meta:
        st.caption(f"Current result: the saved model '{result.meta['applied_from']}' (bundle "
                   f"{result.meta['bundle_hash'][:12]}), applied on the **Results** page; train here to compare "
                   "models on your labels.")
    else:
        st.subheader("Model comparison on your labels")
        table = pd.DataFrame(result.meta["metrics"]).T
        st.dataframe(table.style.format(precision=3), width="stretch")
        st.caption(f"Scheme: {table['scheme'].iloc[0] if 'scheme' in table else 'n/a'} · seed {result.meta['seed']} · "
                   f"applied model: {result.meta['model']} (bundle {result.meta['bundle_hash'][:12]})")
        if "scheme" in table and "CV" in str(table["scheme"].iloc[0]):
            st.caption("With few labels each model is scored on a handful of held-out labelled cells per population, "
                       "every population counted equally. VIME adapts to how common each population is among the "
                       "unlabelled cells, so it can score lower here than on the whole sample (BENCHMARKS.md).")
    folder = bundle_folder(result.meta["bundle_dir"])
    marker_label = {c.name: c.label for c in dataset.channels}
    gates = [] if folder is None else valley_gate_table(read_json(folder / "bundle.json"), marker_label)
    if gates:
        st.subheader("Gates the VIME teacher drew")
        st.caption("Cells between two populations were settled at the density valley of one marker "
                   "(threshold in transformed units; valley density relative to the lower of the two populations' "
                   "densities at their centres).")
        st.dataframe(pd.DataFrame(gates), hide_index=True)
