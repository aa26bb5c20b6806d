"""Atomic file writes: a temp file in the same folder, then rename, so a crash never leaves half a file."""
from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")  # what atomic_file names its temp files: .<name>.<random>.tmp


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary handle to a temp file beside `path`; on success it is synced and renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut after it keeps the new file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temp_file(path: Path) -> bool:
    """Whether `path` is a temp file of atomic_file (left behind only when a writer was killed)."""
    return bool(TEMP_NAME.match(path.name))


def remove_stale_temp_files(root: Path, older_than_s: float) -> list[Path]:
    """Delete atomic_file temp files under `root` last written more than `older_than_s` seconds ago; return them."""
    cutoff = time.time() - older_than_s
    removed = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                if is_temp_file(path) and path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
    return removed


@contextmanager
def directory_lock(folder: Path, exclusive: bool = True, wait: bool = True) -> Iterator[bool]:
    """Hold a lock on the folder itself (no lock file inside it, so a listing of it sees none): shared or exclusive.
    Yields True once held; with `wait` off, yields False at once (holding nothing) while another holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def folder_lock(folder: Path, exclusive: bool = True) -> Iterator[None]:
    """Hold `folder`/lock: writers alone, readers shared, so no writer removes a file a reader is about to open."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=_json_default).encode())


def atomic_save_npy(path: Path, array: np.ndarray, chunk_rows: int = 65_536) -> None:
    """Save an array as .npy atomically, in row chunks so a strided view is never copied whole (no pickle)."""
    if array.dtype.hasobject:
        raise TypeError("object arrays cannot be saved without pickle")
    with atomic_file(path) as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape})
        if array.ndim == 0:
            handle.write(array.tobytes())
        for start in range(0, len(array) if array.ndim else 0, chunk_rows):
            handle.write(np.ascontiguousarray(array[start:start + chunk_rows]).data)


def read_json(path: Path, default: Any = None) -> Any:
    """Read JSON from `path`, or return `default` when the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")
