"""Callback types shared by long-running work: progress reports, cancellation checks and the
exception that ends cancelled work (imports nothing of ours)."""
from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]  # progress(fraction in [0, 1], message)
ShouldStop = Callable[[], bool]  # should_stop() is True once the caller asked the work to stop


class JobCancelled(Exception):
    """Raised inside a job's work when the user cancelled it."""
