"""Train and apply as the Train page runs it (in a JobManager thread, threads bounded as at server start) beside the
standalone fit of the same VIME model on the same cells; also the longest wait between two progress reports.

Usage: nice python bench/app_training.py [--per-population 1317] [--seed 0] [--repeats 3]
Data: the built-in demo (20,000 cells); the three largest populations get `--per-population` labels each (seeded),
the Train page's default request (compare the fast baselines on held-out labels, apply VIME) is run on them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cytoauto_core.run.threads import bound_threads  # noqa: E402

CORES = bound_threads()  # what ui/server.py does at server start, before numba and TensorFlow load

from cytoauto_core.prep.transforms import default_spec, transform_features  # noqa: E402
from cytoauto_core.run.jobs import JobManager  # noqa: E402
from cytoauto_core.study.demo import make_demo  # noqa: E402
from cytoauto_core.tools.models.vime import VIMEClassifier, VIMEParams  # noqa: E402
from cytoauto_core.tools.training import DEFAULT_COMPARISON, TrainingRequest, train_and_apply, trainable_cells  # noqa: E402


def demo_labels(populations: np.ndarray, per_population: int, seed: int) -> tuple[np.ndarray, dict[int, str]]:
    """Labels (-1 = unlabelled) for `per_population` seeded cells of each of the three largest populations."""
    rng = np.random.default_rng(seed)
    names, counts = np.unique(populations, return_counts=True)
    chosen = [n for n in names[np.argsort(-counts)] if n.lower() != "unassigned"][:3]
    labels = np.full(len(populations), -1, np.int64)
    for pid, name in enumerate(chosen, start=1):
        cells = np.flatnonzero(populations == name)
        labels[rng.choice(cells, min(per_population, cells.size), replace=False)] = pid
    return labels, {pid: str(name) for pid, name in enumerate(chosen, start=1)}


class Recorder:
    """Progress reports with their times: the longest silence overall and per stage."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float, str]] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.events.append((time.perf_counter(), fraction, message))

    def between(self, first: str, then: str) -> float:
        """Seconds from the first report starting with `first` to the first starting with `then`."""
        start = next(t for t, _, m in self.events if m.startswith(first))
        return next(t for t, _, m in self.events if m.startswith(then)) - start

    def longest_gap(self) -> tuple[float, str]:
        """Seconds of the longest wait between two reports, and the message shown during it."""
        gaps = [(b[0] - a[0], a[2]) for a, b in zip(self.events, self.events[1:])]
        return max(gaps) if gaps else (0.0, "")


def in_app(dataset, x, spec, labels, names, models_dir: Path, seed: int) -> tuple[float, Recorder, object]:
    """pages/train.py's work function in a JobManager thread; wall seconds from start to done."""
    request = TrainingRequest(compare=list(DEFAULT_COMPARISON), apply="VIME", vime=page_vime_settings(), seed=seed)
    recorder = Recorder()

    def work(progress, should_stop):
        def both(fraction: float, message: str) -> None:
            recorder(fraction, message)
            progress(fraction, message)

        return train_and_apply(dataset, x, spec, labels, names, request, models_dir, both, should_stop)

    start = time.perf_counter()
    job = JobManager().start("train-bench", "Training", work)
    while job.running:
        time.sleep(0.05)
    if job.status != "done":
        raise RuntimeError(f"in-app training {job.status}: {job.error}")
    return time.perf_counter() - start, recorder, job.result


def page_vime_settings() -> dict:
    """The VIME settings the Train page's form submits when left at its defaults."""
    d = VIMEParams()
    return {"rounds": d.rounds, "pseudo_threshold": d.pseudo_threshold, "p_m": d.p_m,
            "beta": d.beta, "entropy_weight": d.entropy_weight}


def standalone(x, labels, seed: int, max_unlabeled: int) -> float:
    """VIMEClassifier.fit on the same labelled and unlabelled cells, in the main thread; wall seconds."""
    cells = trainable_cells(labels)
    unlabelled = np.flatnonzero(labels < 0)
    rng = np.random.default_rng(seed)
    if unlabelled.size > max_unlabeled:
        unlabelled = np.sort(rng.choice(unlabelled, max_unlabeled, replace=False))
    start = time.perf_counter()
    VIMEClassifier(VIMEParams(**{**page_vime_settings(), "seed": seed})).fit(x[cells], labels[cells], x[unlabelled])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-population", type=int, default=1317)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dataset = make_demo()
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    labels, names = demo_labels(dataset.annotations["population"].to_numpy(), args.per_population, args.seed)
    load = os.getloadavg()
    print(f"demo: {dataset.n_cells:,} cells, {int((labels >= 0).sum()):,} labelled over {len(names)} populations "
          f"({', '.join(names.values())}); threads bounded to {CORES} core(s); load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}", flush=True)

    app, final, alone, gaps = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternating order, so neither path always runs on a warmer process
            for which in (("standalone", "app") if i % 2 == 0 else ("app", "standalone")):
                if which == "standalone":
                    alone.append(standalone(x, labels, args.seed, TrainingRequest([]).max_unlabeled))
                else:
                    seconds, recorder, outcome = in_app(dataset, x, spec, labels, names, Path(tmp), args.seed)
                    app.append(seconds)
                    final.append(recorder.between("final VIME", "saving"))
                    gaps.append(recorder.longest_gap())
                print(f"  run {i + 1} {which}: {(alone if which == 'standalone' else app)[-1]:.1f} s", flush=True)
    rows = {"standalone VIME fit (main thread)": alone,
            "in-app Train and apply (JobManager thread)": app,
            "  of which the final VIME fit on all labels": final}
    table = pd.DataFrame({"median s": [np.median(v) for v in rows.values()],
                          "runs (s)": [" ".join(f"{t:.1f}" for t in v) for v in rows.values()]}, index=list(rows))
    table["× standalone"] = (table["median s"] / np.median(alone)).round(2)
    print(table.round(1).to_string())
    fits = outcome.scores["fit_seconds"]
    print("last app run's comparison fits: " + ", ".join(f"{m} {t:.1f} s" for m, t in fits.items()))
    gap, message = max(gaps)
    print(f"longest wait between progress reports in the app runs: {gap:.1f} s (showing '{message}')")
    print("macro-F1 of the comparison: " + ", ".join(f"{m} {v:.3f}" for m, v in outcome.scores["macro_f1"].items()))
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
