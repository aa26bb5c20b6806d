"""The machinery of the seeded fuzz tests: mutated files are read by a worker script in subprocesses under an
address-space limit, with a per-read time limit enforced from outside; a killed or hung read is recorded and the
worker restarted from the next job.

A worker script receives the job file and the first job's index; for each job it prints `S <i>` before reading and
`R <i> <json>` after, so the supervisor knows which read hung or died.
"""
from __future__ import annotations

import json
import os
import queue
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
READ_LIMIT_S = 20
MEMORY_LIMIT = 3 << 30
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_jobs(jobs: list[dict[str, str]], job_file: Path, worker: str) -> dict[int, dict]:
    """Read every job with the `worker` script in subprocesses; a read past READ_LIMIT_S is a hang (the worker is
    killed and restarted from the next job)."""
    job_file.write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    results: dict[int, dict] = {}
    next_job = 0
    while next_job < len(jobs):
        with open(job_file.with_suffix(".stderr"), "w+") as err:
            proc = subprocess.Popen([sys.executable, "-c", worker, str(job_file), str(next_job)], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=_limit_memory)
            next_job = _supervise(proc, results, next_job, err)
    return results


def _supervise(proc: subprocess.Popen, results: dict[int, dict], first: int, err) -> int:
    """Collect one worker's results; return the job to restart from (after a hang or a killed read) or the end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for ln in proc.stdout:
            lines.put(ln)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    current, started = None, time.monotonic()
    while True:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if current is not None and time.monotonic() - started > READ_LIMIT_S:
                proc.kill()
                proc.wait()
                results[current] = {"status": "hang"}
                return current + 1
            continue
        if line is None:
            break
        tag, index, *rest = line.rstrip("\n").split(" ", 2)
        if tag == "S":
            current, started = int(index), time.monotonic()
        else:
            results[int(index)] = json.loads(rest[0])
    proc.wait()
    err.seek(0)
    if current is not None and current not in results:  # killed in the middle of a read
        results[current] = {"status": "oom" if proc.returncode == -9 else "crash", "message": err.read()[-500:]}
        return current + 1
    if current is None:
        raise AssertionError(f"the fuzz worker failed before its first read: {err.read()[-800:]}")
    return current + 1


def attempt_read(path, reader=None) -> tuple[dict, object]:
    """One read (by `reader`, read_file unless given) as a worker reports it: the dataset and {"status": "loaded"},
    or None and a refusal (its message), "oom" or a "traceback" (its class, message and the line it came from)."""
    import traceback

    from cytoauto_core.base.errors import CytoInputError
    from cytoauto_core.io import read_file

    try:
        return {"status": "loaded"}, (reader or read_file)(path)
    except CytoInputError as exc:
        return {"status": "refused", "message": str(exc)}, None
    except MemoryError:
        return {"status": "oom"}, None
    except Exception as exc:
        return {"status": "traceback", "message": type(exc).__name__ + ": " + str(exc)[:300],
                "where": traceback.format_exc().strip().splitlines()[-3][:300]}, None


def pending_jobs(argv: list[str]):
    """A worker's side of the protocol: (index, job) of every job from the one the supervisor restarts at, each
    announced with `S <i>` before it is read (answer with report)."""
    jobs = json.load(open(argv[1]))
    for i in range(int(argv[2]), len(jobs)):
        print("S", i, flush=True)
        yield i, jobs[i]


def report(i: int, out: dict) -> None:
    """A worker's answer for job `i`: `R <i> <json>`."""
    print("R", i, json.dumps(out), flush=True)
