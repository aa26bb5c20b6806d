"""Reading an untrusted AnnData (.h5ad) file as a dataset, from its own bytes and within a bounded memory.

Only what a dataset needs is read, with h5py directly (anndata would read every layer, graph and `uns` entry whole):
`layers['raw']` (else `X`), dense or sparse, in blocks of rows straight into the events array;
`obsm['other_channels']` and numeric `obs` columns as further channels; text and categorical `obs` columns as
annotations; `var`'s channel and marker names; and from `uns` the channel table, the spillover matrix and the file
keywords. Before any data byte is read, hdf5_guard has refused every route outside the file, and the sizes the file
declares are checked against its real size: what is read may take at most EXPANSION times the file's bytes (or
FLOOR_BYTES for small files) in memory, so a few megabytes cannot ask for gigabytes.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..base.dataset import Channel, Dataset, Spillover, make_channels, make_unique
from ..base.errors import CytoInputError, first_line, shortened
from .h5ad import DERIVED_COLUMNS, OTHER_CHANNELS, PROVENANCE, RAW_LAYER
from .hdf5_guard import StoredArray, open_contained

EXPANSION = 16  # gzip of float32 events gives 1.1–4x; a file asking for 16x more memory than its size is a bomb
FLOOR_BYTES = 64 << 20  # small files may always use this much (a 400,000-cell × 40-channel float32 table)
BLOCK_BYTES = 32 << 20  # rows of a matrix read at a time
STRINGS_PER_BLOCK = 4096
STRING_OVERHEAD = 56  # bytes of a Python str object beyond its characters
READ_LIMIT_S = 600  # a parse that takes longer is stopped: a 2 GB upload reads in seconds
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding cytoauto_core, for the worker's `-m`
NUMERIC = "iuf"
NO_SAMPLE = "no sample"
log = logging.getLogger(__name__)


@dataclass
class _Budget:
    """The memory a file may make the reader allocate, spent as arrays are planned and strings are read."""

    name: str
    file_bytes: int
    spent: int = 0

    @property
    def limit(self) -> int:
        return allowance(self.file_bytes)

    def spend(self, nbytes: int, what: str) -> None:
        self.spent += int(nbytes)
        if self.spent > self.limit:
            raise CytoInputError(
                f"'{self.name}' declares {what} needing {_size(self.spent)} of memory, more than {EXPANSION} times "
                f"its {_size(self.file_bytes)} on disk; it was not read.")


@dataclass
class _Column:
    """One obs/var column: numeric values (float32) or text (an object array of str)."""

    numeric: np.ndarray | None = None
    text: np.ndarray | None = None


@dataclass
class _Frame:
    """A dataframe's columns in their stored order, and the ones left out with the reason."""

    columns: dict[str, _Column] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def allowance(file_bytes: int) -> int:
    """The memory a file of `file_bytes` bytes may make the reader allocate."""
    return max(FLOOR_BYTES, EXPANSION * file_bytes)


def read_h5ad(path: Path, display_name: str | None = None) -> Dataset:
    """Load an AnnData file (cells × markers) as a dataset, keeping its obs columns; any problem is one sentence.
    The file is parsed in a child process whose memory is capped (h5ad_worker), then its dataset is read back."""
    path = Path(path).absolute()  # the worker runs in the package's folder, not the caller's
    name = display_name or path.name
    allowed = allowance(path.stat().st_size)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="h5ad-") as out:
        try:
            done = subprocess.run([sys.executable, "-m", "cytoauto_core.io.h5ad_worker", str(path), name, out,
                                   str(allowed)], cwd=PACKAGE_ROOT, env=env, capture_output=True, text=True,
                                  timeout=READ_LIMIT_S)
        except subprocess.TimeoutExpired as exc:
            raise CytoInputError(f"'{name}' could not be read as an AnnData .h5ad file (reading it took over "
                                 f"{READ_LIMIT_S // 60} minutes).") from exc
        result = Path(out) / "result.json"
        if done.returncode != 0 or not result.exists():
            log.warning("h5ad worker for %s ended with %s: %s", name, done.returncode, done.stderr[-2000:])
            raise CytoInputError(f"'{name}' could not be read as an AnnData .h5ad file (its HDF5 structure is "
                                 f"damaged).")
        return _dataset_from(Path(out), json.loads(result.read_text()))


def _dataset_from(folder: Path, result: dict) -> Dataset:
    """The dataset the worker wrote to `folder` (or its refusal, raised)."""
    if "refused" in result:
        raise CytoInputError(result["refused"])
    spill = result["spillover"]
    return Dataset(events=np.load(folder / "events.npy", allow_pickle=False),
                   channels=[Channel(**c) for c in result["channels"]], samples=result["samples"],
                   sample_ids=np.load(folder / "sample_ids.npy", allow_pickle=False),
                   annotations=pd.read_parquet(folder / "annotations.parquet"),
                   spillover=None if spill is None else Spillover(spill["channels"], np.asarray(spill["matrix"])),
                   metadata=result["metadata"], warnings=result["warnings"], name=result["name"])


def read_contained(path: Path, name: str) -> Dataset:
    """Parse the file in this process (h5ad_worker calls it under a memory cap); any problem is one sentence."""
    try:
        with open_contained(path, name) as (f, arrays):
            return _read(f, arrays, _Budget(name, path.stat().st_size))
    except CytoInputError:
        raise
    except MemoryError as exc:
        raise CytoInputError(f"'{name}' asks for more memory than a file of its size may use; it was not "
                             f"read.") from exc
    except Exception as exc:  # h5py raises many error types on damaged files; the user needs one sentence
        raise CytoInputError(f"'{name}' could not be read as an AnnData .h5ad file ({first_line(exc)}).") from exc


def _read(f: h5py.File, arrays: dict[str, StoredArray], budget: _Budget) -> Dataset:
    name = budget.name
    warnings: list[str] = []
    matrix_key = f"layers/{RAW_LAYER}"
    if matrix_key not in f:
        matrix_key = "X"
        warnings.append(f"'{name}' has no '{RAW_LAYER}' layer, so its X values were loaded as the events; untick "
                        "'Apply arcsinh' on the Data page if they are already transformed.")
    if matrix_key not in f:
        raise CytoInputError(f"'{name}' is not an AnnData .h5ad file (it holds no X matrix of events).")
    matrix = f[matrix_key]
    n_obs, n_vars = _matrix_shape(matrix, name)
    if n_obs == 0 or n_vars == 0:
        raise CytoInputError(f"'{name}' holds no cells or no markers.")
    budget.spend(n_obs * n_vars * 4, f"an X of {n_obs:,} cells × {n_vars:,} markers")
    for prefix in ("/obs", "/var", f"/obsm/{OTHER_CHANNELS}", "/uns/channels", "/uns/spillover", "/uns/meta"):
        budget.spend(sum(a.nbytes for p, a in arrays.items() if p.startswith(prefix + "/")), prefix[1:])

    var = _frame(f, "var", n_vars, budget, required=True)
    names = _texts(var, "channel") or _index(f, "var", n_vars, budget)
    markers = _texts(var, "marker") or list(names)
    other = _frame(f, f"obsm/{OTHER_CHANNELS}", n_obs, budget, required=False)
    obs = _frame(f, "obs", n_obs, budget, required=True)
    if PROVENANCE in f.get("uns", {}):  # our own export: its per-cell results are not measurements
        for column in DERIVED_COLUMNS:
            obs.columns.pop(column, None)
    extra = {k: c.numeric for k, c in other.columns.items() if c.numeric is not None}
    other_text = [k for k, c in other.columns.items() if c.numeric is None]
    numeric_obs = {k: c.numeric for k, c in obs.columns.items() if c.numeric is not None and k != "sample"}
    for skipped in [*other.skipped, *obs.skipped, *other_text]:
        warnings.append(f"'{name}' has a cell column '{shortened(skipped)}' this app cannot read as numbers or text; "
                        "it was left out.")
    names = [*names, *extra, *numeric_obs]
    markers = [*markers, *extra, *numeric_obs]
    table = _channel_table(f, budget, warnings)
    channels = _channels(names, markers, table, set(numeric_obs))
    order = _original_order(channels, None if table is None else table["name"])
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    budget.spend(n_obs * (len(channels) - n_vars) * 4, f"{len(channels) - n_vars} more channels")
    events = np.empty((n_obs, len(channels)), np.float32)
    _fill_matrix(matrix, events, position[:n_vars], name)
    for j, values in enumerate([*extra.values(), *numeric_obs.values()], start=n_vars):
        events[:, position[j]] = values
    channels = [channels[i] for i in order]

    samples, sample_ids = _samples(obs.columns.get("sample"), n_obs, name, warnings)
    text = {k: c.text for k, c in obs.columns.items() if c.text is not None and k != "sample"}
    annotations = pd.DataFrame(text) if text else pd.DataFrame()
    good = np.isfinite(events).all(axis=1)
    if not good.all():
        bad = int((~good).sum())
        if bad == len(good):
            raise CytoInputError(f"'{name}' has no cell without missing or infinite values.")
        warnings.append(f"'{name}' has {bad:,} cells with missing or infinite values; they were dropped.")
        events, sample_ids = events[good], sample_ids[good]
        annotations = annotations[good].reset_index(drop=True) if text else annotations
    return Dataset(events=events, channels=channels, samples=samples, sample_ids=sample_ids, annotations=annotations,
                   spillover=_spillover(f, channels, budget, warnings), metadata=_meta(f, budget), warnings=warnings,
                   name=name)


# ---------------------------------------------------------------- the events matrix

def _matrix_shape(matrix: h5py.Dataset | h5py.Group, name: str) -> tuple[int, int]:
    """(cells, markers) of a dense dataset or an anndata sparse group, refusing anything else."""
    if isinstance(matrix, h5py.Dataset):
        if matrix.ndim != 2:
            raise CytoInputError(f"'{name}' holds an X that is not a cells × markers table.")
        if matrix.dtype.kind not in NUMERIC + "b":
            raise CytoInputError(f"'{name}' stores its X as {_kind(matrix.dtype)}, not numbers.")
        return int(matrix.shape[0]), int(matrix.shape[1])
    encoding = _attr(matrix, "encoding-type")
    if encoding not in ("csr_matrix", "csc_matrix") or not {"data", "indices", "indptr"} <= set(matrix.keys()):
        raise CytoInputError(f"'{name}' holds an X in a layout this app does not read "
                             f"({shortened(encoding or 'none')}).")
    try:
        rows, cols = (int(v) for v in np.asarray(matrix.attrs["shape"]).ravel())
    except (KeyError, ValueError, TypeError) as exc:
        raise CytoInputError(f"'{name}' holds a sparse X without a valid shape.") from exc
    if rows < 0 or cols < 0:
        raise CytoInputError(f"'{name}' holds a sparse X without a valid shape.")
    return rows, cols


def _fill_matrix(matrix: h5py.Dataset | h5py.Group, events: np.ndarray, columns: np.ndarray, name: str) -> None:
    """Copy the matrix into `events[:, columns]`, a block of rows (or, for CSC, a column) at a time."""
    n_obs, n_vars = events.shape[0], len(columns)
    if isinstance(matrix, h5py.Dataset):
        step = max(1, BLOCK_BYTES // max(1, n_vars * matrix.dtype.itemsize))
        for start in range(0, n_obs, step):
            events[start:start + step, columns] = matrix[start:start + step]
        return
    data, indices, indptr = matrix["data"], matrix["indices"], matrix["indptr"]
    csr = _attr(matrix, "encoding-type") == "csr_matrix"
    major = n_obs if csr else n_vars
    if data.dtype.kind not in NUMERIC + "b" or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" or \
            data.ndim != 1 or indices.ndim != 1 or indptr.shape != (major + 1,) or indices.shape != data.shape:
        raise CytoInputError(f"'{name}' holds a sparse X whose parts do not fit together.")
    pointers = indptr[:].astype(np.int64)
    if pointers[0] != 0 or pointers[-1] != data.shape[0] or (np.diff(pointers) < 0).any() or \
            data.shape[0] > n_obs * n_vars:
        raise CytoInputError(f"'{name}' holds a sparse X whose parts do not fit together.")
    minor = n_vars if csr else n_obs
    step = max(1, BLOCK_BYTES // max(1, 4 * minor)) if csr else 1
    for start in range(0, major, step):
        stop = min(major, start + step)
        lo, hi = int(pointers[start]), int(pointers[stop])
        where = indices[lo:hi].astype(np.int64)
        if len(where) and (where.min() < 0 or where.max() >= minor):
            raise CytoInputError(f"'{name}' holds a sparse X with an entry outside its shape.")
        block = np.zeros((stop - start, minor), np.float32)
        rows = np.repeat(np.arange(stop - start), np.diff(pointers[start:stop + 1]))
        np.add.at(block, (rows, where), data[lo:hi].astype(np.float32))
        if csr:
            events[start:stop, columns] = block
        else:
            events[:, columns[start]] = block[0]


# ---------------------------------------------------------------- dataframes (obs, var, obsm frames)

def _frame(f: h5py.File, key: str, n: int, budget: _Budget, required: bool) -> _Frame:
    """The columns of an anndata dataframe group of `n` rows (its index is not read)."""
    name = budget.name
    group = f.get(key)
    if group is None and not required:
        return _Frame()
    if not isinstance(group, h5py.Group) or _attr(group, "encoding-type") != "dataframe":
        if not required:
            return _Frame()
        raise CytoInputError(f"'{name}' has no {key} table in the layout anndata 0.7 or later writes.")
    index_key = _attr(group, "_index") or "_index"
    index = group.get(index_key)
    rows = index.shape[0] if isinstance(index, h5py.Dataset) and index.ndim == 1 else None
    if rows != n and required:
        unit = "cells in X" if key == "obs" else "markers in X"
        raise CytoInputError(f"'{name}' has {'no' if rows is None else f'{rows:,}'} rows in its {key} table but "
                             f"{n:,} {unit}.")
    frame = _Frame()
    for column in group.keys():
        if column == index_key:
            continue
        values = _column(group[column], n, budget)
        if values is None:
            frame.skipped.append(column)
        else:
            frame.columns[column] = values
    return frame


def _column(node: h5py.Dataset | h5py.Group, n: int, budget: _Budget) -> _Column | None:
    """One column as numbers or text, by its anndata encoding; None when it is neither (or not `n` long)."""
    encoding = _attr(node, "encoding-type")
    if isinstance(node, h5py.Dataset):
        if node.shape != (n,):
            return None
        if node.dtype.kind in NUMERIC:
            return _Column(numeric=node[:].astype(np.float32))
        if node.dtype.kind == "b":
            return _Column(text=np.where(node[:], "True", "False").astype(object))
        return _Column(text=_strings(node, budget))
    parts = set(node.keys())
    if encoding == "categorical" and {"codes", "categories"} <= parts:
        codes, categories = node["codes"], node["categories"]
        if codes.shape != (n,) or codes.dtype.kind not in "iu" or categories.ndim != 1:
            return None
        names = _labels(categories, budget)
        if names is None:
            return None
        values = codes[:].astype(np.int64)
        if ((values < -1) | (values >= len(names))).any():  # -1 is anndata's missing value; others are damage
            return None
        lookup = np.asarray([*names, ""], dtype=object)  # a missing value reads as an empty string
        return _Column(text=lookup[values])
    if encoding in ("nullable-integer", "nullable-boolean", "nullable-string-array") and {"values", "mask"} <= parts:
        values, mask = node["values"], node["mask"]
        if values.shape != (n,) or mask.shape != (n,) or mask.dtype.kind != "b":
            return None
        missing = mask[:]
        if encoding == "nullable-integer" and values.dtype.kind in NUMERIC:
            return _Column(numeric=np.where(missing, np.nan, values[:]).astype(np.float32))
        if encoding == "nullable-boolean" and values.dtype.kind == "b":
            return _Column(text=np.where(missing, "", np.where(values[:], "True", "False")).astype(object))
        if encoding == "nullable-string-array" and values.dtype.kind in "OS":
            text = _strings(values, budget)
            text[missing] = ""
            return _Column(text=text)
    return None


def _labels(categories: h5py.Dataset, budget: _Budget) -> list[str] | None:
    """A categorical's category names (numbers written as text), or None for another type."""
    if categories.dtype.kind in NUMERIC + "b":
        return [str(v) for v in categories[:].tolist()]
    if categories.dtype.kind in "OS":
        return list(_strings(categories, budget))
    return None


def _strings(dataset: h5py.Dataset, budget: _Budget) -> np.ndarray:
    """A 1-D text dataset as an object array of str, read in blocks whose characters are charged to the budget
    (a variable-length string's size is only known once it is read)."""
    if dataset.dtype.kind not in "OS" or dataset.ndim != 1:
        raise CytoInputError(f"'{budget.name}' stores {shortened(dataset.name)} as numbers where text was expected.")
    reader = dataset.asstr(errors="replace")
    out = np.empty(dataset.shape[0], dtype=object)
    for start in range(0, len(out), STRINGS_PER_BLOCK):
        block = reader[start:start + STRINGS_PER_BLOCK]
        budget.spend(sum(len(s) for s in block) + STRING_OVERHEAD * len(block), f"text in {shortened(dataset.name)}")
        out[start:start + len(block)] = block
    return out


def _texts(frame: _Frame, column: str) -> list[str] | None:
    """A text column of a frame as a list, None when the frame has no such column."""
    found = frame.columns.get(column)
    if found is None:
        return None
    if found.text is None:
        return [str(v) for v in found.numeric.tolist()]
    return [str(v) for v in found.text]


def _index(f: h5py.File, key: str, n: int, budget: _Budget) -> list[str]:
    """A dataframe's index (var names), as text."""
    group = f[key]
    node = group.get(_attr(group, "_index") or "_index")
    if not isinstance(node, h5py.Dataset) or node.shape != (n,):
        raise CytoInputError(f"'{budget.name}' has a {key} table without one name per column of X.")
    if node.dtype.kind in NUMERIC:
        return [str(v) for v in node[:].tolist()]
    return [str(v) for v in _strings(node, budget)]


def _samples(column: _Column | None, n: int, name: str, warnings: list[str]) -> tuple[list[str], np.ndarray]:
    """Sample names and each cell's sample id from obs['sample'] (one sample named after the file without it)."""
    if column is None:
        return [name], np.zeros(n, np.int32)
    text = column.text if column.text is not None else np.asarray([str(v) for v in column.numeric.tolist()], object)
    missing = text == ""
    if missing.any():
        warnings.append(f"'{name}' has {int(missing.sum()):,} cells without a sample in obs['sample']; they were put "
                        f"in a sample named '{NO_SAMPLE}'.")
        text = np.where(missing, NO_SAMPLE, text)
    samples, ids = np.unique(text.astype(str), return_inverse=True)
    return [str(s) for s in samples], ids.astype(np.int32)


# ---------------------------------------------------------------- uns: channel table, spillover, keywords

def _channel_table(f: h5py.File, budget: _Budget, warnings: list[str]) -> dict[str, list] | None:
    """uns['channels'] (name, marker, kind, is_feature) when every part is there and of one length."""
    group = f.get("uns/channels")
    if not isinstance(group, h5py.Group):
        return None
    parts = {}
    for key in ("name", "kind", "is_feature"):
        node = group.get(key)
        if not isinstance(node, h5py.Dataset) or node.ndim != 1:
            break
        parts[key] = node[:].astype(bool).tolist() if key == "is_feature" else list(_strings(node, budget))
    if len(parts) != 3 or len({len(v) for v in parts.values()}) != 1:
        warnings.append(f"'{budget.name}' has a channel table (uns/channels) that is incomplete; channel kinds were "
                        "guessed from their names instead.")
        return None
    return parts


def _channels(names: list[str], markers: list[str], stored: dict[str, list] | None,
              numeric_obs: set[str]) -> list[Channel]:
    """The channel table: kinds and feature flags from the file's own table when it has one, else guessed."""
    channels = make_channels(make_unique(names), markers)
    if stored is None:
        for c in channels:
            if c.name in numeric_obs:
                c.kind, c.is_feature = "other", False
        return channels
    kinds = dict(zip(stored["name"], stored["kind"]))
    features = dict(zip(stored["name"], stored["is_feature"]))
    for c in channels:
        c.kind = kinds.get(c.name, "other")
        c.is_feature = features.get(c.name, False)
    return channels


def _original_order(channels: list[Channel], stored: list[str] | None) -> list[int]:
    """Column order of the original dataset when the file records it (columns it does not know go last)."""
    if stored is None:
        return list(range(len(channels)))
    rank = {n: i for i, n in enumerate(stored)}
    return sorted(range(len(channels)), key=lambda i: (rank.get(channels[i].name, len(rank)), i))


def _spillover(f: h5py.File, channels: list[Channel], budget: _Budget, warnings: list[str]) -> Spillover | None:
    """uns['spillover'] when it is a finite, invertible square matrix over channels of this file; else a warning."""
    group = f.get("uns/spillover")
    if group is None:
        return None
    reason = "is not a square matrix over named channels"
    if isinstance(group, h5py.Group) and isinstance(group.get("channels"), h5py.Dataset) and \
            isinstance(group.get("matrix"), h5py.Dataset):
        names, matrix = group["channels"], group["matrix"]
        n = names.shape[0] if names.ndim == 1 else -1
        if matrix.shape == (n, n) and n > 0 and matrix.dtype.kind in NUMERIC:
            labels = [str(s) for s in _strings(names, budget)]
            values = matrix[:].astype(np.float64)
            if len(set(labels)) != n or not set(labels) <= {c.name for c in channels}:
                reason = "names channels this file does not have"
            elif not np.isfinite(values).all() or np.linalg.matrix_rank(values) < n:
                reason = "has missing, infinite or degenerate entries"
            else:
                return Spillover(labels, values)
    warnings.append(f"'{budget.name}' has a spillover matrix (uns/spillover) that {reason}, so it was not loaded and "
                    "the events cannot be compensated with it.")
    return None


def _meta(f: h5py.File, budget: _Budget) -> dict[str, str]:
    """uns['meta']: the source file's keywords, text scalars only."""
    group = f.get("uns/meta")
    if not isinstance(group, h5py.Group):
        return {}
    meta = {}
    for key, node in group.items():
        if isinstance(node, h5py.Dataset) and node.shape == () and node.dtype.kind in "OS":
            value = node.asstr(errors="replace")[()]
            budget.spend(len(value) + len(key) + 2 * STRING_OVERHEAD, "file keywords")
            meta[str(key)] = value
    return meta


# ---------------------------------------------------------------- small helpers

def _attr(node: h5py.HLObject, key: str) -> str | None:
    """A text attribute, or None when it is missing or not text."""
    value = node.attrs.get(key)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _kind(dtype: np.dtype) -> str:
    return "text" if dtype.kind in "OSU" else f"{dtype} values"


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
