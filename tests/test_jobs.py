"""Background jobs report progress, return results, fail with one sentence, can be cancelled within a second, and\nrefuse a second start; thread bounds reach the libraries."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT
from cytoauto_core.base.contracts import JobCancelled
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.prep.transforms import default_spec, transform_features
from cytoauto_core.run.jobs import Job, JobManager
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models import TrainingCancelled
from cytoauto_core.tools.models.vime import VIMEClassifier, VIMEParams
from ui.widgets import time_left


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


def test_a_progress_report_after_cancel_ends_the_work_quickly():
    """Every progress report is a place to stop, so work that only reports (and never asks) still ends on Cancel."""
    manager = JobManager()

    def work(progress, should_stop):
        for step in range(10_000):
            time.sleep(0.01)
            progress(step / 10_000, f"step {step}")
        return "finished"

    job = manager.start("k", "Reporting", work)
    time.sleep(0.2)
    job.cancel()
    _wait(job)
    assert job.status == "cancelled" and job.result is None
    assert job.finished - job.cancel_requested < 0.5


def test_a_second_start_while_running_is_counted_not_run():
    manager = JobManager()
    runs = []

    def work(progress, should_stop):
        runs.append(1)
        while not should_stop():
            time.sleep(0.01)

    first = manager.start("k", "Training", work)
    again = manager.start("k", "Training", work)
    assert again is first and first.refused_starts == 1
    first.cancel()
    _wait(first)
    assert len(runs) == 1
    assert manager.start("k", "Training", lambda p, s: 1).refused_starts == 0, "a finished job no longer blocks a start"


def _estimates(pace, end: float, every: float = 1.0) -> list[tuple[float, float | None, float]]:
    """A job reporting `pace(t)` every `every` seconds until `end`: (t, estimated seconds left, true seconds left)."""
    job = Job(key="k", title="Training", started=0.0)
    out = []
    for t in np.arange(every, end + every / 2, every):
        job.report(pace(t), "working", now=t)
        out.append((t, job.seconds_left(now=t), end - t))
    return out


def test_time_left_is_quiet_until_a_tenth_is_done_then_follows_a_steady_pace():
    shown = _estimates(lambda t: t / 200, 200)
    assert all(left is None for t, left, _ in shown if t < 20), "too little progress to judge"
    assert all(left == pytest.approx(true, abs=1.0) for t, left, true in shown if 20 <= t < 200)


def test_a_slow_start_then_fast_work_is_not_fifteen_minutes_at_one_minute():
    """As reported: 6 % done after a minute on a busy machine, then done at 2 min 40 s; at one minute the estimate
    said 'about 15 min 15 s left'. Now it says nothing until a tenth is done, and follows the fast pace after."""
    stalled_then_fast = lambda t: 0.001 * t if t <= 60 else 0.06 + 0.0094 * (t - 60)  # noqa: E731
    shown = _estimates(stalled_then_fast, 160)
    assert all(left is None for t, left, _ in shown if t <= 60)
    assert all(left < 2.5 * true for t, left, true in shown if left is not None), "never wildly above the truth"
    assert all(left == pytest.approx(true, rel=0.1) for t, left, true in shown if 70 <= t < 160)


def test_a_stall_counts_the_estimate_down_then_says_nothing_until_progress_resumes():
    steady_then_stuck = lambda t: min(t / 200, 0.5) if t < 250 else 0.5 + (t - 250) / 200  # noqa: E731
    shown = dict((t, left) for t, left, _ in _estimates(steady_then_stuck, 350))
    assert shown[100] == pytest.approx(100, abs=1) and shown[150] == pytest.approx(50, abs=1)
    assert all(shown[t] is None for t in range(200, 250)), "overdue at the recent pace: no guess"
    assert shown[300] is not None and shown[300] <= 1.5 * 300 * 0.25 / 0.75, "capped by the whole run's pace"


def test_coarse_progress_steps_give_an_estimate_near_the_truth():
    tenth_every_half_minute = lambda t: np.floor(t / 30) / 10  # noqa: E731
    shown = [(left, true) for t, left, true in _estimates(tenth_every_half_minute, 300, every=5) if left is not None]
    assert shown and all(true / 1.6 <= left <= 1.6 * true + 30 for left, true in shown)


@pytest.mark.parametrize("seconds, text", [(12, "under a minute left"), (95, "about 1 min 30 s left"),
                                           (915, "about 15 min left"), (4_800, "about 1 h 20 min left")])
def test_time_left_is_rounded_as_coarsely_as_it_deserves(seconds, text):
    assert time_left(seconds) == text


@pytest.mark.timed
def test_vime_stops_within_a_second_of_cancel_in_every_stage():
    """Cancel asked at the first report of each stage (self-supervision, experts, self-training) ends the fit
    within a second on the demo (20,000 cells, ~1,300 labels for each of 3 populations)."""
    dataset = make_demo()
    x = transform_features(dataset, default_spec(dataset))
    populations = dataset.annotations["population"].to_numpy()
    rng = np.random.default_rng(0)
    names = ["CD4_T_cells", "Monocytes", "CD8_T_cells"]
    labelled = np.concatenate([rng.choice(np.flatnonzero(populations == n), 1300, replace=False) for n in names])
    y = np.repeat(np.arange(3), 1300)
    rest = np.setdiff1d(np.arange(dataset.n_cells), labelled)
    for stage in ("self-supervised", "experts", "round 1"):
        asked: list[float] = []

        def progress(fraction, message, stage=stage, asked=asked):
            if stage in message and not asked:
                asked.append(time.perf_counter())

        with pytest.raises(TrainingCancelled):
            VIMEClassifier(VIMEParams(seed=0)).fit(x[labelled], y, x[rest], progress=progress,
                                                   should_stop=lambda asked=asked: bool(asked))
        assert asked, f"the fit never reported its {stage} stage"
        assert time.perf_counter() - asked[0] < 1.0, stage


def test_bound_threads_limits_blas_and_openmp():
    """In a fresh process, as at a server's start (the limits are process-wide: set here, they would stay for every
    later test)."""
    code = ("import json, os\nimport numpy  # its BLAS, as in the server\nfrom threadpoolctl import threadpool_info\n"
            "from cytoauto_core.run.threads import available_cores, bound_threads\n"
            "one = bound_threads(1)\n"
            "print(json.dumps({'one': one, 'omp': os.environ['OMP_NUM_THREADS'], 'tf': os.environ['TF_NUM_INTEROP_THREADS'],"
            " 'pools': [p['num_threads'] for p in threadpool_info()], 'all': bound_threads(), 'cores': available_cores()}))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["one"] == 1 and seen["omp"] == "1" and seen["tf"]
    assert seen["pools"] and all(n == 1 for n in seen["pools"]), seen
    assert seen["all"] == seen["cores"] >= 1


def test_script_runs_leave_keras_alone_and_skip_the_full_collection(workspace_dir):
    """A watched job's page reruns every second; after each run Streamlit would reset Keras (a full garbage
    collection and a TensorFlow kernel-cache flush under the running training) and collect again, holding the GIL.
    After app.py has run, Keras's layer-name counter survives further script runs (clear_session would reset it)."""
    import tomllib

    import keras
    from streamlit.testing.v1 import AppTest

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    keras.layers.Dense(1)
    at.run()
    assert keras.layers.Dense(1).name != "dense", "a script run reset Keras's global state"


def _page_with_a_job_and_a_button():
    import streamlit as st

    from ui.widgets import job_panel, mark_page_run

    mark_page_run()
    job_panel(st.session_state["job"])
    if st.button("Go", key="go"):
        st.session_state["clicked"] = True


def test_a_click_in_the_run_that_first_sees_a_finished_job_is_kept():
    """A job drawn running, then ended between two runs: the next run (a click) already draws it ended, so it must not
    rerun the page, which would drop the click (the Map page's 'Place every cell' was lost this way)."""
    from streamlit.testing.v1 import AppTest

    gate = threading.Event()
    job = JobManager().start("k", "Test job", lambda progress, should_stop: gate.wait(30))
    at = AppTest.from_function(_page_with_a_job_and_a_button, default_timeout=30)
    at.session_state["job"] = job
    at.run()
    assert at.get("progress"), "the job is drawn running"
    gate.set()
    end = time.time() + 30
    while job.running and time.time() < end:
        time.sleep(0.05)
    at.button(key="go").click().run()
    assert not at.exception, at.exception
    assert at.session_state["clicked"] is True and not at.get("progress")
