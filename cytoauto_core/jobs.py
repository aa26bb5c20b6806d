"""Background jobs: long work (training, embeddings) off the UI thread, with progress and cancellation."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from . import warmup
from .errors import CytoInputError

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
ShouldStop = Callable[[], bool]
Work = Callable[[Progress, ShouldStop], Any]


class JobCancelled(Exception):
    """Raised inside a job's work when the user cancelled it."""


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

    def report(self, fraction: float, message: str) -> None:
        """Record progress; once cancelled, raise JobCancelled so that every report is also a place to stop."""
        if self._cancel.is_set():
            raise JobCancelled(f"{self.title} was cancelled.")
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.message = message

    def elapsed(self, now: float | None = None) -> float:
        return (self.finished or now or time.time()) - self.started

    def seconds_left(self, now: float | None = None) -> float | None:
        """Remaining time at the average pace so far, once there is enough progress to judge (else None)."""
        elapsed = self.elapsed(now)
        if not self.running or self.fraction < 0.03 or elapsed < 3.0:
            return None
        return elapsed * (1.0 - self.fraction) / self.fraction


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
