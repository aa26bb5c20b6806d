"""One bound on every numeric library's threads (OpenMP, BLAS, numba, TensorFlow, XGBoost): the machine's cores.

Each library otherwise sizes its own pool and several pools on a small machine fight over the same cores. Called once
at server start (ui/server.py) and by benchmarks, before the libraries start their pools where possible: environment
variables cover libraries not yet loaded, the libraries' own calls those already loaded.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)
_ENV_PER_CORE = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                 "TF_NUM_INTRAOP_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers restrict), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def bound_threads(cores: int | None = None) -> int:
    """Limit every library's thread pool to `cores` (default: available_cores()); returns the bound used.

    TensorFlow gets `cores` threads inside an op and one op at a time (the models' steps are sequential), as
    VIMEClassifier asks for itself; settings a user exported beforehand win over these defaults.
    """
    n = cores or available_cores()
    for name in _ENV_PER_CORE:
        os.environ.setdefault(name, str(n))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # BLAS and OpenMP libraries loaded so far (numpy's BLAS at least)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "xgboost" in sys.modules:
        sys.modules["xgboost"].set_config(nthread=n)
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            log.info("TensorFlow already started; its thread pools keep their sizes")
    return n
