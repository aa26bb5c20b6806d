"""Once per server process: keep Streamlit's between-runs clean-up off background jobs, bound threads, warm up numba.

A page that shows a running job reruns its progress fragment every second. After every run Streamlit (1.67) calls
`keras.backend.clear_session()` whenever keras is imported — a full garbage collection (~0.45 s with this app's
modules loaded) plus a flush of TensorFlow's kernel cache under a training that is using it — while holding the GIL;
`runner.postScriptGC` (off in .streamlit/config.toml) adds another full collection. Together they held the GIL for
about 0.9 s of every second, so a watched training or map ran several times slower than an unwatched one. The app
builds no Keras model in a script run (training runs in JobManager threads), so the Keras clean-up is skipped;
matplotlib's is kept.
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from cytoauto_core import threads, warmup

log = logging.getLogger(__name__)
_started = threading.Lock()
_done = False


def start_once() -> None:
    """Apply the process-wide settings, the first time any session runs app.py."""
    global _done
    with _started:
        if _done:
            return
        _done = True
    _skip_keras_clear_session()
    log.info("threads bounded to %d core(s)", threads.bound_threads())


def warm_up_after_the_page() -> None:
    """Start the warm-up thread (once per process) at the end of a script run: importing TensorFlow and compiling the
    map code beside the first run of a fresh server made its first page take 15–20 s instead of 3 s (both threads
    want the GIL). Every job starts in a later run than a session's first, so none starts before the warm-up does
    and none imports TensorFlow beside it."""
    if not warmup.started():
        log.info("warming up compiled code in the background")
        warmup.start()


def _skip_keras_clear_session() -> None:
    """Replace Streamlit's after-run clean-up with one that only closes matplotlib figures."""
    from streamlit.runtime.scriptrunner import script_runner

    if not hasattr(script_runner, "_clean_problem_modules"):
        log.warning("Streamlit no longer has _clean_problem_modules; its after-run clean-up is left as it is")
        return

    def close_matplotlib_figures() -> None:
        plt: Any = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close("all")

    script_runner._clean_problem_modules = close_matplotlib_figures
