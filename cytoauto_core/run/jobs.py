"""Background jobs: long work (training, embeddings) off the UI thread, with progress and cancellation."""
from __future__ import annotations

import bisect
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..base.contracts import JobCancelled, Progress, ShouldStop
from ..base.errors import CytoInputError
from . import warmup

log = logging.getLogger(__name__)

Work = Callable[[Progress, ShouldStop], Any]

ESTIMATE_FROM_FRACTION = 0.1  # before a tenth is done the pace says little (start-up, imports, a slow first stage)
ESTIMATE_FROM_SECONDS = 3.0  # and a few seconds: a map of 20,000 cells takes 8-20 s, and its estimate should show
RECENT_PROGRESS = 0.05  # the recent pace: how long the last half of the progress (at least this much) took, until now
ESTIMATE_CAP = 1.5  # never more than this many times what the whole run's average pace says is left
HISTORY_MAX = 256  # progress reports kept for the pace (thinned out, first and last kept, when full)


@dataclass
class Job:
    """One unit of background work and what the UI shows about it."""

    key: str
    title: str
    status: str = "running"  # running | done | failed | cancelled
    fraction: float = 0.0
    message: str = "starting…"
    error: str | None = None
    result: Any = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_requested: float | None = None  # when the user pressed Cancel
    refused_starts: int = 0  # start requests turned down because this job was still running
    history: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (time, fraction) at each report
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def cancel(self) -> None:
        """Ask the work to stop: its next progress report or should_stop() check ends it."""
        if self.cancel_requested is None:
            self.cancel_requested = time.time()
        self._cancel.set()

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def report(self, fraction: float, message: str, now: float | None = None) -> None:
        """Record progress (and when it was made, for the pace); once cancelled, raise JobCancelled so that every
        report is also a place to stop."""
        if self._cancel.is_set():
            raise JobCancelled(f"{self.title} was cancelled.")
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.message = message
        if not self.history or self.fraction > self.history[-1][1]:
            self.history.append((now or time.time(), self.fraction))
            if len(self.history) > HISTORY_MAX:
                self.history = self.history[:-1:2] + self.history[-1:]

    def elapsed(self, now: float | None = None) -> float:
        return (self.finished or now or time.time()) - self.started

    def seconds_left(self, now: float | None = None) -> float | None:
        """Remaining time at the recent pace, counted down since the last report; None until a tenth is done after a few
        seconds, and while a report is overdue at that pace (a stall: nothing honest can be said until the next).

        The recent pace is the time the last half of the progress (at least RECENT_PROGRESS) took, so a slow start (a
        busy machine, imports) is forgotten once the work speeds up; the estimate never exceeds ESTIMATE_CAP times what
        the whole run's average pace gives.
        """
        now = now or time.time()
        elapsed = self.elapsed(now)
        if not self.running or self.fraction < ESTIMATE_FROM_FRACTION or elapsed < ESTIMATE_FROM_SECONDS:
            return None
        last = self.history[-1][0]
        step = max(RECENT_PROGRESS, self.fraction / 2)
        left = (last - self._reached(self.fraction - step)) * (1.0 - self.fraction) / step - (now - last)
        whole = elapsed * (1.0 - self.fraction) / self.fraction
        return min(left, ESTIMATE_CAP * whole) if left > 0 else None

    def _reached(self, fraction: float) -> float:
        """When the progress reached `fraction` (above 0, at most the last report's), interpolated between reports."""
        points = [(self.started, 0.0), *self.history]
        i = bisect.bisect_left([f for _, f in points], fraction)
        (t0, f0), (t1, f1) = points[i - 1], points[i]
        return t0 + (t1 - t0) * (fraction - f0) / (f1 - f0)


class JobManager:
    """Runs at most one job per key in a daemon thread; thread-safe, shared by all sessions."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: str, title: str, work: Work) -> Job:
        """Start `work(progress, should_stop)` unless a job with this key is already running; then that job is
        returned with its refused_starts counted up, so the page can say a run is going."""
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.running:
                current.refused_starts += 1
                return current
            job = Job(key=key, title=title)
            self._jobs[key] = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{key}", daemon=True).start()
        return job

    def forget(self, key: str) -> None:
        """Drop a finished job's record."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.running:
                del self._jobs[key]

    @staticmethod
    def _run(job: Job, work: Work) -> None:
        def should_stop() -> bool:
            return job.should_stop()

        try:
            if not warmup.imports_done():
                job.report(0.0, "waiting for the server to finish loading TensorFlow")
            warmup.wait_for_imports()  # two threads importing TensorFlow at once deadlock
            job.result = work(job.report, should_stop)
            job.status, job.fraction, job.message = "done", 1.0, "finished"
        except Exception as exc:  # every failure is reported to the user as one sentence
            if job.should_stop():
                job.status, job.message = "cancelled", "cancelled"
            elif isinstance(exc, CytoInputError):
                job.status, job.error = "failed", str(exc)
            else:
                log.error("job %s failed:\n%s", job.key, traceback.format_exc())
                job.status, job.error = "failed", f"{job.title} failed unexpectedly ({type(exc).__name__}: {exc})."
        finally:
            job.finished = time.time()
