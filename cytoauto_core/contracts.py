"""Callback types shared by long-running work: progress reports and cancellation checks (imports nothing of ours)."""
from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]  # progress(fraction in [0, 1], message)
ShouldStop = Callable[[], bool]  # should_stop() is True once the caller asked the work to stop
