"""Cluster page: FlowSOM-style clusters of every cell, read on a median heatmap, merged, split and named as populations."""
import numpy as np
import streamlit as st

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.tools.biaxial import default_axes
from cytoauto_core.tools.clustering import ClusteringParams, FlowSOM
from cytoauto_core.tools.clustering.profile import central_cells, cluster_medians, similarity_order
from ui import maps, state, study_cluster
from ui.plots import cluster_heatmap_figure, scatter_figure
from ui.text import literal
from ui.widgets import job_panel

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)
markers = dataset.feature_markers(spec.features)
clusters_store = state.cluster_store(key, dataset)
labels = state.label_store(key, dataset)
SELECTED = f"cluster-pick-{key}"
NAMED = "cluster-named"

st.title("Cluster")
st.caption("Unsupervised clusters of every cell: a 10 × 10 self-organising map merged into the number of clusters you ask "
           "for (FlowSOM's method). Ask for more clusters than the populations you expect, then merge and name them.")
with st.form("cluster"):
    c1, c2 = st.columns(2)
    n_clusters = c1.number_input("Clusters", 2, 100, 20, help="Over-cluster (e.g. 20–40), then merge what belongs together.")
    seed = c2.number_input("Seed", 0, 2**31 - 1, 0)
    submitted = st.form_submit_button("Cluster cells", type="primary")
    whole_study = study_cluster.submit_button(dataset)  # a study's working sample: cluster every cell of the study
if submitted:
    params = ClusteringParams(n_clusters=int(n_clusters), seed=int(seed))
    features = list(spec.features)

    def work(progress, should_stop):
        result = FlowSOM(params).fit_predict(x, progress, should_stop)
        clusters_store.save(result, features)
        return result.description

    state.job_manager().start(f"cluster-{key}", "Clustering", work)
job_panel(state.job_manager().get(f"cluster-{key}"))
study_cluster.panel(key, dataset, spec, int(n_clusters), int(seed), whole_study)

current = clusters_store.current()
if current is None:
    st.info("No clusters yet: choose how many and press **Cluster cells**. It runs in the background.")
    st.stop()
if current.features != list(spec.features):
    st.warning("These clusters were made on other features than the ones now chosen on the Data page; cluster again to use them.")
st.caption(literal(current.description))
sizes = current.sizes()


def _label(cid: int) -> str:
    return f"{current.label(cid)} · {sizes[cid]:,} cells"


medians = cluster_medians(x, current.clusters, markers)
rows, cols = similarity_order(medians)
ordered = medians.loc[rows, cols]
picked = [c for c in st.session_state.get(SELECTED, []) if c in current.names]
event = st.plotly_chart(cluster_heatmap_figure(ordered, [_label(c) for c in rows], picked),
                        key=f"cluster-heatmap-{current.version}", on_select="rerun", selection_mode=("points", "box"))
chosen = sorted({int(p["customdata"]) for p in (event.selection.get("points", []) if event else []) if "customdata" in p})
if chosen and chosen != picked:
    st.session_state[SELECTED] = chosen
    st.rerun()

selected = st.multiselect("Selected clusters", current.ids, default=picked, format_func=_label,
                          key=f"cluster-select-{current.version}-{','.join(map(str, picked))}")
st.session_state[SELECTED] = selected
n_selected = sum(sizes[c] for c in selected)


def _act(action, *args):
    try:
        return action(*args)
    except CytoInputError as exc:
        st.error(literal(exc))
        return None


name_col, edit_col = st.columns(2)
with name_col:
    st.markdown(f"**Name the selection as a population** ({len(selected)} clusters, {n_selected:,} cells)")
    with st.form("name-clusters", clear_on_submit=True, enter_to_submit=False):  # Enter in the name labels nothing
        population = st.text_input("Population name", placeholder="e.g. CD4 T cells")
        how = st.radio("Cells to label", ["the most central cells of each cluster", "every cell"], horizontal=True,
                       help="A few typical cells per cluster are enough to train; every cell also labels the cluster's edges.")
        per_cluster = st.number_input("Central cells per cluster", 5, 10_000, 50)
        if st.form_submit_button("Name as population", type="primary", disabled=not selected) and population.strip():
            if how == "every cell":
                cells = np.flatnonzero(np.isin(current.clusters, selected))
            else:
                cells = np.concatenate([central_cells(x, current.clusters, c, int(per_cluster)) for c in selected])
            pid = _act(labels.population_named, population)
            if pid is not None and _act(labels.assign, cells, pid) is not None:
                _act(clusters_store.rename, selected, population.strip())
                st.session_state[SELECTED] = []
                st.session_state[NAMED] = (f"Labelled {cells.size:,} cells as {literal(population.strip())}; "
                                           "train a model on the **Train** page.")
                st.rerun()
    if NAMED in st.session_state:
        st.success(st.session_state.pop(NAMED))
with edit_col:
    st.markdown("**Merge or split**")
    if st.button("Merge selected clusters", disabled=len(selected) < 2):
        if _act(clusters_store.merge, selected) is not None:
            st.session_state[SELECTED] = []
            st.rerun()
    parts = st.number_input("Split into", 2, 16, 2)
    if st.button("Split the selected cluster", disabled=len(selected) != 1):
        if _act(clusters_store.split, selected[0], x, int(parts), 0) is not None:
            st.session_state[SELECTED] = []
            st.rerun()

st.subheader("Where the clusters are")
view = st.radio("Show on", ["Map", "Marker vs marker"], horizontal=True, index=0 if maps.stored_maps(key) else 1)
codes = current.clusters
categories = current.categories()
if view == "Map":
    picked_map = maps.map_picker(key)
    if picked_map is None:
        if not maps.map_progress(key, "Show the clusters on a marker-vs-marker plot meanwhile."):
            st.info("Compute a map on the **Map** page to see the clusters on it.")
        st.stop()
    _, xy, meta = picked_map
    axis = (f"{meta['method'].upper()} 1", f"{meta['method'].upper()} 2")
else:
    first, second = default_axes(x)
    c1, c2 = st.columns(2)
    mx = c1.selectbox("x marker", markers, index=first)
    my = c2.selectbox("y marker", markers, index=second)
    xy, axis = x[:, [markers.index(mx), markers.index(my)]], (mx, my)
show = np.where(np.isin(codes, selected), codes, -1) if selected else codes
rows_drawn = maps.drawn_rows(key, dataset.n_cells, f"clusters-{current.version}", np.asarray(codes))
st.plotly_chart(scatter_figure(np.asarray(xy), rows_drawn, show, categories=categories, axis=axis,
                               title="Selected clusters (others grey)" if selected else "Clusters",
                               labelled_on_top=bool(selected)),
                key=f"cluster-map-{view}")
