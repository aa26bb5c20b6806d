"""The Data page's import of files already on the server ($CYTOAUTO_DATA): a study too large for the browser is read
there in a background job, one file in memory at a time (cytoauto_core.study.ingest)."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from cytoauto_core.base.contracts import Progress, ShouldStop
from cytoauto_core.run.jobs import Job
from cytoauto_core.study import ingest
from ui import state
from ui.text import literal
from ui.widgets import duration, job_panel, show_error

JOB_KEY = "server-import"  # one import at a time per workspace; every session of it sees the progress
JOB_TITLE = "Server import"
LISTING_TTL_S = 15
STARTED = "server-import-started"  # when this session started its import: only that session opens the new dataset
HOW_TO_ENABLE = ("Files on the server can be imported too (no upload, no size limit): start the app with "
                 "`CYTOAUTO_DATA=/path/to/files`, or use `python -m cytoauto_core ingest`.")


def server_import(current_key: str) -> None:
    """The section importing files under the data root, its job's progress and the last import's report; one
    caption on how to enable it when the server was started without a data root."""
    root = ingest.data_root()
    if root is None:
        st.caption(HOW_TO_ENABLE)
        return
    with st.expander("Import files from the server"):
        _chooser(root)
    job = state.job_manager().get(JOB_KEY)
    job_panel(job, on_done=_open_imported)
    if job is not None and job.status == "done":
        _report(job, root, current_key)


def _chooser(root: Path) -> None:
    """The files under `root` matching a pattern, which of them to import, under what name, and the Import button."""
    st.caption(literal(f"Data folder on the server: {root}"))
    pattern = st.text_input("Files to list", "**/*", key="server-import-pattern",
                            help="A pattern relative to the data folder: `**/*` lists every file in every subfolder, "
                                 "`run1/*.fcs` the FCS files of one folder. Nothing outside the folder can be imported.")
    try:
        sizes = _listing(root, pattern.strip() or "**/*")
    except Exception as exc:  # e.g. a pattern reaching outside the data folder: one sentence, never a traceback
        show_error(exc, "Listing the files")
        return
    if not sizes:
        st.info("No readable FCS, CSV/TSV/TXT or .h5ad file matches this pattern.")
        return
    names = {_relative(path, root): path for path in sizes}
    if st.checkbox(f"All {len(names):,} matching files", value=True, key="server-import-all"):
        picked = list(names)
    else:
        picked = st.multiselect("Files to import", list(names), key="server-import-files")
    chosen = [names[name] for name in picked]
    st.caption(f"{len(chosen):,} file(s) chosen, {_size(sum(sizes[path] for path in chosen))}")
    name = st.text_input("Dataset name (optional)", key="server-import-name",
                         help="Else the file's name for one file, or 'N files'.")
    if st.button("Import", type="primary", disabled=not chosen, key="server-import-start"):
        _start(chosen, name.strip() or None, root)


def _start(paths: list[Path], name: str | None, root: Path) -> None:
    """Start the import job (unless one is running: the panel then says so) and remember that this session did."""
    ws = state.workspace()
    inputs = [glob.escape(str(path)) for path in paths]  # names such as 'a[1].fcs' are files, not patterns

    def work(progress: Progress, should_stop: ShouldStop) -> ingest.IngestReport:
        return ingest.ingest(inputs, ws, name, root=root, progress=progress, should_stop=should_stop)

    previous = state.job_manager().get(JOB_KEY)
    job = state.job_manager().start(JOB_KEY, JOB_TITLE, work)
    if job is not previous:
        st.session_state[STARTED] = job.started


def _open_imported(job: Job) -> None:
    """Open the imported dataset, as a finished upload does, in the session that started the import only."""
    if st.session_state.get(STARTED) == job.started:
        state.select_dataset(job.result.key)


def _report(job: Job, root: Path, current_key: str) -> None:
    """What the last import stored, the files it skipped with their reasons (literally, in a table) and its warnings
    (those are also the dataset's own, which the page shows when the dataset is open)."""
    report: ingest.IngestReport = job.result
    used = len(report.files) - len(report.skipped)
    st.success(f"Imported {report.n_cells:,} cells from {used:,} of {len(report.files):,} file(s) in "
               f"{duration(report.seconds) if report.seconds >= 60 else f'{report.seconds:.1f} s'}.")
    if report.skipped:
        st.caption(f"{len(report.skipped):,} file(s) skipped:")
        st.dataframe(pd.DataFrame({"file": [_relative(Path(f.path), root) for f in report.skipped],
                                   "why": [f.reason for f in report.skipped]}), hide_index=True, width="stretch")
    if report.key != current_key:
        for warning in report.warnings:
            st.warning(literal(warning))
    if st.button("Clear this report", key="server-import-clear"):
        state.job_manager().forget(JOB_KEY)
        st.rerun()


@st.cache_data(ttl=LISTING_TTL_S, max_entries=32, show_spinner=False)
def _listing(root: Path, pattern: str) -> dict[Path, int]:
    """The files matching `pattern` that this server may read, with their sizes in bytes; walked again at most every
    LISTING_TTL_S seconds, as the Data page reruns at every click and a large data folder takes a while to walk."""
    sizes = {}
    for path in ingest.list_files(root, pattern):
        try:
            if path.is_file() and os.access(path, os.R_OK):
                sizes[path] = path.stat().st_size
        except OSError:  # gone or unreadable since it was listed
            continue
    return sizes


def _relative(path: Path, root: Path) -> str:
    """A path as shown to the user: relative to the data folder."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _size(n_bytes: int) -> str:
    """Bytes as '12 KB', '340 MB' or '1.2 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}" if n_bytes < 10 * scale else f"{n_bytes / scale:.0f} {unit}"
    return f"{n_bytes} bytes"
