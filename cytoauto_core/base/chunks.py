"""Row chunks of a per-cell array on disk: read and write them with bounded memory, never through a resident mapping.

A stored dataset's events are a memory-mapped `.npy`; reading a 50 M-cell study through that mapping would leave
every touched page resident in the process (8 GB of RSS). `read_rows` reads the bytes of a row range with pread
instead, so a pass over all cells holds one chunk at a time; `ArrayFile` writes a per-cell result the same way,
one row range at a time, from any process (a Dask worker included) that can see the file.
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK_ROWS = 262_144  # 40 float32 channels: 40 MB per chunk
SPARSE_SHARE = 64  # a chunk with fewer wanted rows than 1/64 of its rows is read row by row
HEADER_BYTES = 256  # a fixed .npy header size, so the shape can be rewritten in place as rows are appended


def row_ranges(n_rows: int, chunk_rows: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges covering n_rows, each at most chunk_rows long."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    return [(s, min(s + chunk_rows, n_rows)) for s in range(0, n_rows, chunk_rows)]


def mapped_file(array: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of row 0) when `array` is a whole C-ordered memory-mapped file as np.load maps it, else None."""
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous:
        return str(array.filename), int(array.offset)
    return None


def read_rows(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows start:stop as an array of their own: read from the file when `array` maps one, else a view."""
    source = mapped_file(array)
    if source is None:
        return array[start:stop]
    path, offset = source
    row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    count = (stop - start) * row_bytes // array.dtype.itemsize
    with open(path, "rb") as fh:
        block = np.fromfile(fh, dtype=array.dtype, count=count, offset=offset + start * row_bytes)
    if block.size != count:
        raise OSError(f"{path} ended before row {stop}")
    return block.reshape((stop - start,) + array.shape[1:])


def iter_rows(array: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(start, rows) for consecutive chunks of `array`, one chunk in memory at a time."""
    for start, stop in row_ranges(array.shape[0], chunk_rows):
        yield start, read_rows(array, start, stop)


def gather_rows(array: np.ndarray, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """array[rows] for sorted row numbers, from the file when `array` maps one: a chunk read whole where many of its
    rows are wanted, row by row where few are (a sparse subsample of a big file reads only its rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    source = mapped_file(array)
    if source is None:
        return np.asarray(array[rows])
    out = np.empty((rows.size,) + array.shape[1:], dtype=array.dtype)
    row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    bounds = np.searchsorted(rows, np.arange(0, array.shape[0] + chunk_rows, chunk_rows))
    fd = os.open(source[0], os.O_RDONLY)
    try:
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            start = k * chunk_rows
            if hi - lo > chunk_rows // SPARSE_SHARE:
                block = read_rows(array, start, min(start + chunk_rows, array.shape[0]))
                out[lo:hi] = block[rows[lo:hi] - start]
                continue
            for i in range(lo, hi):
                data = os.pread(fd, row_bytes, source[1] + int(rows[i]) * row_bytes)
                out[i] = np.frombuffer(data, dtype=array.dtype).reshape(array.shape[1:])
    finally:
        os.close(fd)
    return out


def _header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version 1.0 .npy header padded to HEADER_BYTES."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": tuple(int(s) for s in shape)})
    head = b"\x93NUMPY\x01\x00"
    body = text.encode("latin1")
    pad = HEADER_BYTES - len(head) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError("shape too long for the fixed .npy header")
    return head + (HEADER_BYTES - len(head) - 2).to_bytes(2, "little") + body + b" " * pad + b"\n"


@dataclass(frozen=True)
class ArrayFile:
    """A per-cell .npy result on disk, written in row ranges (by several processes at once if need be)."""

    path: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def create(cls, path: Path | str, shape: tuple[int, ...], dtype: np.dtype | str) -> "ArrayFile":
        """A file of the full size (sparse until written) with its final header; a file already there is replaced,
        not overwritten, so whoever still maps it keeps reading the old one."""
        Path(path).unlink(missing_ok=True)
        with open(path, "wb") as fh:
            fh.write(_header(shape, np.dtype(dtype)))
            fh.truncate(HEADER_BYTES + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        return cls(str(path), tuple(int(s) for s in shape), np.dtype(dtype).str)

    def write_rows(self, start: int, block: np.ndarray) -> None:
        """Write `block` as rows start: (pwrite; no mapping stays resident)."""
        data = np.ascontiguousarray(block, dtype=np.dtype(self.dtype))
        if data.shape[1:] != self.shape[1:] or start + data.shape[0] > self.shape[0]:
            raise ValueError("block does not fit the array")
        row_bytes = np.dtype(self.dtype).itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        fd = os.open(self.path, os.O_WRONLY)
        try:
            view, written = memoryview(data).cast("B"), 0
            while written < len(view):
                written += os.pwrite(fd, view[written:], HEADER_BYTES + start * row_bytes + written)
        finally:
            os.close(fd)

    def open(self) -> np.ndarray:
        """The finished array, memory-mapped read-only."""
        return np.load(self.path, mmap_mode="r")


class RowAppender:
    """An .npy file grown by appending row blocks; its header is rewritten in place with the final row count."""

    def __init__(self, path: Path | str, row_shape: tuple[int, ...], dtype: np.dtype | str = np.float32) -> None:
        self.path, self.row_shape, self.dtype, self.rows = str(path), tuple(row_shape), np.dtype(dtype), 0
        self._fh = open(self.path, "wb")
        self._fh.write(_header((0, *self.row_shape), self.dtype))

    def append(self, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype=self.dtype)
        if data.shape[1:] != self.row_shape:
            raise ValueError("block rows have the wrong shape")
        self._fh.write(memoryview(data).cast("B"))
        self.rows += data.shape[0]

    def close(self) -> None:
        """Write the final shape and make the bytes durable."""
        self._fh.seek(0)
        self._fh.write(_header((self.rows, *self.row_shape), self.dtype))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
