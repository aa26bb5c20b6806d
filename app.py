"""CytoAutoCluster: upload, explore, map, label, train and read results for cytometry data."""
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow start-up chatter out of the server log

import streamlit as st

from ui import server

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
server.start_once()  # before ui.state loads numba: thread bounds, no Keras clean-up after runs

from ui import state  # noqa: E402
from ui.text import literal  # noqa: E402
from ui.widgets import mark_page_run  # noqa: E402

st.set_page_config(page_title="CytoAutoCluster", page_icon="🧬", layout="wide")
mark_page_run()

PAGES = [
    st.Page("pages/data.py", title="Data", icon=":material/upload_file:", default=True),
    st.Page("pages/explore.py", title="Explore", icon=":material/bar_chart:"),
    st.Page("pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("pages/cluster.py", title="Cluster", icon=":material/hub:"),
    st.Page("pages/label.py", title="Label", icon=":material/ads_click:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/results.py", title="Results", icon=":material/insights:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
]

navigation = st.navigation(PAGES)
key, dataset = state.current_dataset()
with st.sidebar:
    st.markdown("### CytoAutoCluster")
    st.caption(f"**{literal(dataset.name)}**  \n{dataset.n_cells:,} cells · {len(dataset.channels)} channels · "
               f"{len(dataset.samples)} sample(s)")
    state.account_sidebar()
try:
    navigation.run()
finally:
    server.warm_up_after_the_page()  # TensorFlow and numba load once the first page is drawn
