"""Background jobs report progress, return results, fail with one sentence and can be cancelled."""
from __future__ import annotations

import time

from cytoauto_core.errors import CytoInputError
from cytoauto_core.jobs import JobCancelled, JobManager


def _wait(job, timeout=5.0):
    end = time.time() + timeout
    while job.running and time.time() < end:
        time.sleep(0.01)


def test_job_runs_and_reports():
    manager = JobManager()

    def work(progress, should_stop):
        progress(0.5, "half way")
        return 42

    job = manager.start("k", "Test", work)
    _wait(job)
    assert job.status == "done" and job.result == 42


def test_one_job_per_key_and_cancel():
    manager = JobManager()

    def work(progress, should_stop):
        while not should_stop():
            time.sleep(0.01)
        raise JobCancelled()

    first = manager.start("k", "Loop", work)
    assert manager.start("k", "Loop", work) is first
    first.cancel()
    _wait(first)
    assert first.status == "cancelled"


def test_failures_become_sentences():
    manager = JobManager()

    def bad_input(progress, should_stop):
        raise CytoInputError("The file lacks channel 'CD3'.")

    def crash(progress, should_stop):
        raise RuntimeError("boom")

    a, b = manager.start("a", "Training", bad_input), manager.start("b", "Training", crash)
    _wait(a), _wait(b)
    assert a.status == "failed" and a.error == "The file lacks channel 'CD3'."
    assert b.status == "failed" and b.error.startswith("Training failed unexpectedly")
