"""Map page: compute PCA / t-SNE / UMAP coordinates for every cell in the background and view them."""
import numpy as np
import streamlit as st

from cytoauto_core.tools.embeddings import EmbeddingParams
from ui import maps, state, study_map
from ui.plots import scatter_figure
from ui.results import load_result
from ui.text import literal
from ui.widgets import job_panel

key, dataset = state.current_dataset()
x, spec = state.features(key, dataset)

st.title("Map")
with st.form("embed"):
    c1, c2, c3, c4, c5 = st.columns(5)
    method = c1.selectbox("Method", ["umap", "tsne", "pca"], format_func={"umap": "UMAP", "tsne": "t-SNE (openTSNE)", "pca": "PCA"}.get)
    subsample = c2.number_input("Fit on (cells)", 1_000, 500_000, min(50_000, dataset.n_cells), step=5_000,
                                help="t-SNE/UMAP are fitted on this many cells; the rest are placed next to their nearest fitted neighbours. PCA uses every cell.")
    perplexity = c3.number_input("Perplexity (t-SNE)", 5, 200, 30)
    neighbours = c4.number_input("Neighbours (UMAP)", 5, 200, 15)
    seed = c5.number_input("Seed", 0, 2**31 - 1, 0)
    submitted = st.form_submit_button("Compute map", type="primary")
if submitted:
    params = EmbeddingParams(method=method, max_fit_cells=int(subsample), perplexity=float(perplexity),
                             n_neighbors=int(neighbours), seed=int(seed))
    if maps.start_embedding(key, dataset, params) is None:
        st.toast("This map was already computed with these settings; it is shown below.")

job_panel(state.job_manager().get(maps.job_key(key)))

picked = maps.map_picker(key)
if picked is None:
    job = state.job_manager().get(maps.job_key(key))
    if job is None or not job.running:  # while one runs, its progress bar above says so
        st.info("No map yet: choose a method and press **Compute map**. It runs in the background; you can switch "
                "pages meanwhile.")
    st.stop()
name, coords, meta = picked
st.caption(literal(meta["description"]))
store = state.label_store(key, dataset)
result = load_result(key)
clustering = state.cluster_store(key, dataset).current()
extra = ((["your labels"] if store.populations() else []) + (["clusters"] if clustering else [])
         + (["predicted population", "confidence"] if result else []))
choice = st.selectbox("Colour by", maps.color_choices(dataset, spec.features, extra))
colors = None
if choice == "your labels":
    populations = store.populations()
    values, categories = maps.codes_for(store.labels(), [p.id for p in populations]), [p.name for p in populations]
    colors = [p.color for p in populations]
elif choice == "clusters":
    values, categories = np.asarray(clustering.clusters, dtype=np.int32), clustering.categories()
elif choice == "predicted population":
    cells = result.cells(float(result.meta.get("threshold", 0.5)))
    ids = sorted(cells.names)
    values, categories = maps.codes_for(cells.population_id, ids), [cells.names[i] for i in ids]
elif choice == "confidence":
    values, categories = result.proba.max(axis=1), None
else:
    values, categories = maps.color_values(choice, dataset, x, spec.features)
rows = maps.drawn_rows(key, dataset.n_cells, choice if categories else "", values if categories else None)
if rows.size < dataset.n_cells:
    st.caption(f"Drawing {rows.size:,} of {dataset.n_cells:,} cells (stratified subsample, seed 0); every cell has coordinates.")
method = meta["method"].upper()
fig = scatter_figure(coords, rows, values, categories=categories, colors=colors, title=method, axis=(f"{method} 1", f"{method} 2"),
                     hover=maps.hover_values(dataset, x, spec.features, rows))
st.plotly_chart(fig, key=f"map-{name}")
study_map.panel(key, dataset, name, coords, meta)
