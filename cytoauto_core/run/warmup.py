"""Load TensorFlow, then compile the numba code of maps (UMAP) and clustering (the SOM), in a background thread when
the server starts.

A server's first UMAP map otherwise spends tens of seconds compiling with its progress bar still; the warm-up runs
the same functions on a few hundred random cells, so their compiled code is in memory (and the SOM's in numba's disk
cache) before a user asks for a map. TensorFlow (which umap imports too) is imported first and alone: two threads
importing it at once deadlock inside its import, so jobs wait for wait_for_imports() before they start.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

log = logging.getLogger(__name__)
_finished = threading.Event()
_imported = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def start() -> threading.Thread:
    """Start the warm-up thread once per process; later calls return the same thread."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="warm-up", daemon=True)
            _thread.start()
        return _thread


def started() -> bool:
    """Whether start() has been called in this process."""
    return _thread is not None


def finished() -> bool:
    """Whether the warm-up has ended (successfully or not) or was never started in this process."""
    return _thread is None or _finished.is_set()


def imports_done() -> bool:
    """Whether wait_for_imports() would return at once."""
    return _thread is None or _imported.is_set()


def wait_for_imports() -> None:
    """Return once the warm-up thread has imported TensorFlow (at once when no warm-up was started)."""
    if _thread is not None:
        _imported.wait()


def import_heavy_libraries() -> float:
    """Import TensorFlow and Keras (what VIME and umap load); returns the seconds it took."""
    started = time.perf_counter()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    return time.perf_counter() - started


def warm_up() -> float:
    """Run the SOM and a UMAP map on 400 seeded random cells; returns the seconds it took."""
    from ..tools.clustering.som import train_som
    from ..tools.embeddings import EmbeddingParams, embed

    started = time.perf_counter()
    cells = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    train_som(cells, side=3, epochs=1, seed=0)
    embed(cells, EmbeddingParams(method="umap", max_fit_cells=300, seed=0))
    return time.perf_counter() - started


def _run() -> None:
    try:
        log.info("TensorFlow imported in %.1f s", import_heavy_libraries())
    except Exception:  # then the job that needs it imports it and reports the failure as its own
        log.exception("importing TensorFlow failed")
    finally:
        _imported.set()
    try:
        log.info("numba warm-up done in %.1f s", warm_up())
    except Exception:  # a failed warm-up only means the first map compiles on demand
        log.exception("numba warm-up failed; the first map or clustering compiles when it runs")
    finally:
        _finished.set()
