"""Small reusable widgets: error sentences and the background-job panel."""
from __future__ import annotations

import logging
from typing import Callable

import streamlit as st

from cytoauto_core.errors import CytoInputError
from cytoauto_core.jobs import Job

log = logging.getLogger(__name__)


def show_error(exc: Exception, what: str) -> None:
    """Show an error as one sentence; unexpected ones are logged with their traceback, never shown."""
    if isinstance(exc, CytoInputError):
        st.error(str(exc))
    else:
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}).")


def job_panel(job: Job | None, on_done: Callable[[Job], None] | None = None) -> None:
    """A progress bar with a Cancel button that refreshes itself every second while the job runs."""
    if job is None:
        return

    @st.fragment(run_every=1.0 if job.running else None)
    def _panel() -> None:
        if job.running:
            st.progress(job.fraction, text=f"{job.title}: {job.message}")
            if st.button("Cancel", key=f"cancel-{job.key}"):
                job.cancel()
        elif job.status == "failed":
            st.error(job.error)
        elif job.status == "cancelled":
            st.warning(f"{job.title} was cancelled.")
        if not job.running and st.session_state.get(f"seen-{job.key}") != job.started:
            st.session_state[f"seen-{job.key}"] = job.started
            if job.status == "done" and on_done is not None:
                on_done(job)
            st.rerun()

    _panel()
