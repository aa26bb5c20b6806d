"""Compile the numba code of maps (UMAP) and clustering (the SOM) in a background thread when the server starts.

A server's first UMAP map otherwise spends tens of seconds compiling with its progress bar still; the warm-up runs
the same functions on a few hundred random cells, so their compiled code is in memory (and the SOM's in numba's disk
cache) before a user asks for a map.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

log = logging.getLogger(__name__)
_finished = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def start() -> threading.Thread:
    """Start the warm-up thread once per process; later calls return the same thread."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="numba-warm-up", daemon=True)
            _thread.start()
        return _thread


def finished() -> bool:
    """Whether the warm-up has ended (successfully or not) or was never started in this process."""
    return _thread is None or _finished.is_set()


def warm_up() -> float:
    """Run the SOM and a UMAP map on 400 seeded random cells; returns the seconds it took."""
    from .clustering.som import train_som
    from .embeddings import EmbeddingParams, embed

    started = time.perf_counter()
    cells = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    train_som(cells, side=3, epochs=1, seed=0)
    embed(cells, EmbeddingParams(method="umap", max_fit_cells=300, seed=0))
    return time.perf_counter() - started


def _run() -> None:
    try:
        log.info("numba warm-up done in %.1f s", warm_up())
    except Exception:  # a failed warm-up only means the first map compiles on demand
        log.exception("numba warm-up failed; the first map or clustering compiles when it runs")
    finally:
        _finished.set()
