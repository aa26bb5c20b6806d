"""Background jobs: long work (training, embeddings) off the UI thread, with progress and cancellation."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

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
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def cancel(self) -> None:
        self._cancel.set()

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def report(self, fraction: float, message: str) -> None:
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.message = message


class JobManager:
    """Runs at most one job per key in a daemon thread; thread-safe, shared by all sessions."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: str, title: str, work: Work) -> Job:
        """Start `work(progress, should_stop)` unless a job with this key is already running."""
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.running:
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
