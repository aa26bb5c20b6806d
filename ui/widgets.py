"""Small reusable widgets: error sentences and the background-job panel."""
from __future__ import annotations

import logging
import time
from typing import Callable

import streamlit as st

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.run import warmup
from cytoauto_core.run.jobs import Job
from ui.text import literal

log = logging.getLogger(__name__)
PAGE_RUN_STARTED = "page-run-started"  # when this session's latest full page run began (fragment runs do not set it)


def mark_page_run() -> None:
    """Note when this page run began (app.py calls it first thing), so job_panel knows what the page already saw."""
    st.session_state[PAGE_RUN_STARTED] = time.time()


def show_error(exc: Exception, what: str) -> None:
    """Show an error as one sentence (shown literally: it may quote a file name); see error_sentence."""
    st.error(literal(error_sentence(exc, what)))


def error_sentence(exc: Exception, what: str) -> str:
    """The sentence telling the user why `what` failed: a CytoInputError's own, else a generic one, the unexpected
    error's traceback going to the log (never to the page)."""
    if isinstance(exc, CytoInputError):
        return str(exc)
    log.error("%s failed", what, exc_info=exc)
    return f"{what} failed unexpectedly ({type(exc).__name__}: {exc})."


def job_panel(job: Job | None, on_done: Callable[[Job], None] | None = None) -> None:
    """A progress bar with elapsed and estimated remaining time and a Cancel button, refreshed every second while the
    job runs; says when a start request was turned down because this job is running, and how fast Cancel acted.

    When the job ends the whole page is drawn again, but only if the job ended after this page run began (see
    mark_page_run) or `on_done` changed what the page shows: a run that drew the finished job from its start keeps
    its click, which a rerun would drop."""
    if job is None:
        return

    @st.fragment(run_every=1.0 if job.running else None)
    def _panel() -> None:
        if job.running:
            st.progress(job.fraction, text=f"{job.title}: {literal(job.message)} · {progress_times(job)}")
            if job.cancel_requested is not None:
                st.caption(f"Cancelling: the run stops at its next checkpoint (asked "
                           f"{duration(time.time() - job.cancel_requested)} ago).")
            elif st.button("Cancel", key=f"cancel-{job.key}"):
                job.cancel()
                st.rerun(scope="fragment")
            if job.refused_starts:
                st.warning(f"A {job.title.lower()} run is already going, so the new one was not started: wait for "
                           "this one to finish or press Cancel first.")
            if not warmup.finished():
                st.caption("The server is still warming up after its start (loading TensorFlow, compiling the map "
                           "and clustering code), which can slow this job.")
        elif job.status == "failed":
            st.error(literal(job.error))
        elif job.status == "cancelled":
            after = "" if job.cancel_requested is None or job.finished is None else (
                f"; it stopped {job.finished - job.cancel_requested:.1f} s after Cancel")
            st.warning(f"{job.title} was cancelled{after}.")
        if not job.running and st.session_state.get(f"seen-{job.key}") != job.started:
            st.session_state[f"seen-{job.key}"] = job.started
            if job.status == "done" and on_done is not None:
                on_done(job)
                st.rerun()
            elif job.finished is None or job.finished >= st.session_state.get(PAGE_RUN_STARTED, 0.0):
                st.rerun()

    _panel()


def progress_times(job: Job) -> str:
    """'12 s elapsed' and, once the pace can be judged, a rounded 'about 2 min 30 s left'."""
    now = time.time()
    left = job.seconds_left(now)
    text = f"{duration(job.elapsed(now))} elapsed"
    return text if left is None else f"{text}, {time_left(left)}"


def time_left(seconds: float) -> str:
    """An estimate rounded as coarsely as it deserves: 'under a minute left', 'about 2 min 30 s left' (half minutes
    below ten minutes), 'about 14 min left', 'about 1 h 20 min left' (ten minutes from an hour on)."""
    if seconds < 60:
        return "under a minute left"
    step = 30 if seconds < 600 else 60 if seconds < 3600 else 600
    rounded = int(step * round(seconds / step))
    hours, minutes, rest = rounded // 3600, rounded % 3600 // 60, rounded % 60
    text = (f"{hours} h {minutes} min" if hours else f"{minutes} min") + (f" {rest} s" if rest else "")
    return f"about {text.replace(' 0 min', '')} left"


def duration(seconds: float) -> str:
    """Seconds as '42 s' or '3 min 05 s'."""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
