"""Per-session state that survives refreshes: the current dataset lives in the URL and the workspace."""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from cytoauto_core.base.contracts import Progress, ShouldStop
from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.prep.transforms import TransformSpec, default_spec, transform_features
from cytoauto_core.run.jobs import Job, JobManager, Work
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace, default_root
from cytoauto_core.study import large_study
from cytoauto_core.study.demo import ensure_demo
from cytoauto_core.tools.clustering.store import ClusterStore
from ui.text import literal

QUERY_KEY = "dataset"
NOT_IN_WORKSPACE = "The dataset in the link is not in your workspace; the demo is open instead."
USERS_DIR = "users"
_ANNOUNCED = "_working-sample-announced"  # the script run that already showed the working-sample sentence
_job_thread = threading.local()  # in a background job's thread: the root of the workspace that started it
_SESSION_STARTED = "_session_started"


def workspace() -> Workspace:
    """This session's workspace: the server's folder ($CYTOAUTO_WORKSPACE or ./workspace), or, for a user signed in
    with st.login, that user's own folder inside it, which no other user's session can list or open."""
    job_root = getattr(_job_thread, "root", None)
    if job_root is not None:
        return _workspace(job_root)
    root = default_root()
    if st.user.get("is_logged_in"):
        return _workspace(str(user_root(root, _identity())))
    if sign_in_required():
        _sign_in_page()
    return _workspace(str(root))


def user_root(root: Path, identity: str) -> Path:
    """A signed-in user's workspace folder: named by a hash of the identity, so the folder name reveals no e-mail."""
    return root / USERS_DIR / hashlib.sha256(identity.encode()).hexdigest()[:32]


def sign_in_required() -> bool:
    """Whether .streamlit/secrets.toml has an [auth] section: then every visitor signs in and gets a workspace."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def _identity() -> str:
    """Who is signed in, as the identity provider names them: issuer and subject (e-mail when there is no subject)."""
    subject = st.user.get("sub") or st.user.get("email")
    if not subject:
        st.error("Your sign-in did not say who you are (no subject or e-mail); ask the server's administrator.")
        st.stop()
    return f"{st.user.get('iss', '')}|{subject}"


def _sign_in_page() -> None:
    st.title("CytoAutoCluster")
    st.write("Each person on this server has a private workspace. Sign in to open yours.")
    st.button("Sign in", type="primary", on_click=st.login)
    st.stop()


def account_sidebar() -> None:
    """Who is signed in and a Sign-out button (nothing when sign-in is not used)."""
    if st.user.get("is_logged_in"):
        st.caption(f"Signed in as {literal(st.user.get('email') or st.user.get('name') or 'you')}")
        st.button("Sign out", on_click=st.logout)


@st.cache_resource
def _workspace(root: str) -> Workspace:
    return Workspace(Path(root))


def job_manager() -> JobManager:
    """Background jobs of this session's workspace, shared by its sessions (keys carry the dataset) and never seen from
    another signed-in user's workspace, even for a dataset both have (such as the demo)."""
    return _job_manager(str(workspace().root))


@st.cache_resource
def _job_manager(root: str) -> JobManager:
    return _WorkspaceJobs(root)


class _WorkspaceJobs(JobManager):
    """The jobs of one workspace. A job's thread has no session (so no st.user); workspace() called in it opens the
    workspace the job was started from."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root

    def start(self, key: str, title: str, work: Work) -> Job:
        def in_workspace(progress: Progress, should_stop: ShouldStop) -> object:
            _job_thread.root = self.root
            return work(progress, should_stop)
        return super().start(key, title, in_workspace)


def demo_key() -> str:
    """Key of the built-in demo dataset, written as a real FCS file into the workspace on first use."""
    return _demo_key(str(workspace().root))


@st.cache_resource(show_spinner="Preparing the demo dataset…")
def _demo_key(root: str) -> str:
    return ensure_demo(_workspace(root))


def _load(key: str) -> Dataset:
    return _load_from(str(workspace().root), key)


@st.cache_resource(max_entries=4, show_spinner=False)
def _load_from(root: str, key: str) -> Dataset:
    return _workspace(root).load_dataset(key)


def current_key() -> str:
    """The dataset the user works on: from the URL (so a refresh keeps it), else the demo, with a word when the link
    named a dataset the workspace does not hold. Whatever the URL holds is only compared with the workspace's keys,
    never used as a path."""
    linked = st.query_params.get(QUERY_KEY)
    key = linked or st.session_state.get(QUERY_KEY)
    if not workspace().has_dataset(key):
        if linked:
            st.warning(NOT_IN_WORKSPACE)
        key = demo_key()
    select_dataset(key)
    return key


def select_dataset(key: str) -> None:
    st.session_state[QUERY_KEY] = key
    if st.query_params.get(QUERY_KEY) != key:
        st.query_params[QUERY_KEY] = key


def current_dataset() -> tuple[str, Dataset]:
    """This session's dataset. Every page starts here, so this is also where a page makes sure it runs inside
    app.py's navigation (see _route_through_app).

    A study larger than large_study.WORKING_CELLS is opened through its working sample (drawn and stored on first
    open): the URL then names the sample, so a refresh and every page see the same cells, and the study is found
    again from the sample (large_study.study_of). Nothing here reads the study's events."""
    _route_through_app()
    key = current_key()
    try:
        key, dataset = _open_working(key, _load(key))
    except CytoInputError as exc:  # a stored dataset damaged on disk: say so and open the demo instead
        if key == demo_key():
            raise
        st.warning(literal(exc))
        select_dataset(demo_key())
        return demo_key(), _load(demo_key())
    _announce_working_sample(key, dataset)
    return key, dataset


def _open_working(key: str, dataset: Dataset) -> tuple[str, Dataset]:
    """The dataset to work on: `dataset` itself, or, for a large study, its working sample (then selected)."""
    if not large_study.is_large(dataset):
        return key, dataset
    sample = _working_sample(str(workspace().root), key, large_study.WORKING_CELLS)
    select_dataset(sample.key)
    return sample.key, _load(sample.key)


@st.cache_resource(max_entries=8, show_spinner="Drawing the study's working sample across all samples (once)…")
def _working_sample(root: str, study_key: str, max_cells: int) -> large_study.WorkingSample:
    """The study's working sample, made and stored on its first opening, found again after that."""
    return large_study.working_sample(_workspace(root), study_key, _load_from(root, study_key), max_cells=max_cells)


def working_sample_of(key: str, dataset: Dataset) -> tuple[large_study.WorkingSample, Dataset] | None:
    """For a working sample: what it is (its study's rows are left on disk) and its study; None for any other
    dataset."""
    study_key = large_study.study_of(workspace(), dataset)
    if study_key is None:
        return None
    try:
        study = _load(study_key)
    except CytoInputError:  # a damaged study: its sample is worked on as any dataset
        return None
    stored = workspace().load_array(key, large_study.ROWS_ARRAY)
    rows = stored[0] if stored is not None else np.broadcast_to(np.int64(0), (dataset.n_cells,))
    seed = int(stored[1].get("seed", large_study.WORKING_SEED)) if stored is not None else large_study.WORKING_SEED
    return large_study.WorkingSample(key, study_key, rows, seed), study


def _announce_working_sample(key: str, dataset: Dataset) -> None:
    """Say once per page (app.py and the page both open the dataset in one run) that it is a study's working
    sample."""
    found = working_sample_of(key, dataset)
    if found is None:
        return
    ctx = get_script_run_ctx()
    this_run = None if ctx is None else ctx.cursors  # a new object at the start of every script run
    if this_run is not None and st.session_state.get(_ANNOUNCED) is this_run:
        return
    st.session_state[_ANNOUNCED] = this_run
    sample, study = found
    st.info(sample.sentence(study))


def _route_through_app() -> None:
    """Until app.py has called st.navigation once, Streamlit 1.67 runs a deep link such as /label straight from
    pages/label.py (its legacy pages-folder mode) for every session, without app.py's layout and navigation.
    Leave that mode; on a session's first run, where no click can be lost, rerun so app.py opens the page."""
    first_run = _SESSION_STARTED not in st.session_state
    st.session_state[_SESSION_STARTED] = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if first_run:
            st.rerun()


def transform_spec(key: str, dataset: Dataset) -> TransformSpec:
    """The dataset's saved feature/transform settings, or sensible defaults."""
    saved = (workspace().load_settings(key) or {}).get("transform")
    return TransformSpec.from_dict(saved) if saved else _default_spec(key, dataset)


@st.cache_data(max_entries=16, show_spinner=False)
def _default_spec(key: str, _dataset: Dataset) -> TransformSpec:
    """default_spec of a dataset (its key is its content hash), measured once: it samples every channel's values."""
    return default_spec(_dataset)


def save_transform_spec(key: str, spec: TransformSpec) -> None:
    settings = workspace().load_settings(key) or {}
    settings["transform"] = spec.to_dict()
    workspace().save_settings(key, settings)


@st.cache_resource(max_entries=3, show_spinner="Transforming events…")
def _features(key: str, spec_json: str) -> np.ndarray:
    array = transform_features(_load(key), TransformSpec.from_dict(json.loads(spec_json)))
    array.flags.writeable = False
    return array


def features(key: str, dataset: Dataset) -> tuple[np.ndarray, TransformSpec]:
    """Transformed features of every cell (read-only, shared) and the spec that made them."""
    spec = transform_spec(key, dataset)
    return _features(key, json.dumps(spec.to_dict(), sort_keys=True)), spec


def label_store(key: str, dataset: Dataset) -> LabelStore:
    return LabelStore(workspace().labels_dir(key), dataset.n_cells)


def cluster_store(key: str, dataset: Dataset) -> ClusterStore:
    """The dataset's clustering with the user's merges, splits and names."""
    return ClusterStore(workspace().dataset_dir(key) / "clusters", dataset.n_cells)


def session_id() -> str:
    """A stable id for this browser session, used to key its background jobs."""
    ctx = st.runtime.scriptrunner.get_script_run_ctx()
    return ctx.session_id if ctx else "local"
