"""Opening an untrusted HDF5 file so that nothing read from it comes from outside its own bytes.

HDF5 lets a file send the library elsewhere: external links (another file), soft links, virtual datasets (slices of
other files), external raw storage (a dataset's bytes in any file, at any offset) and filter plugins (shared
libraries loaded by id). Opening does not follow any of them; reading does. So the whole tree is walked through its
links, without resolving any but hard links, before a single data byte is read, and the file is refused if any
object uses one of these routes. The inventory of datasets it returns (declared shapes and in-memory sizes) lets a
reader check what it is about to allocate against the file's real size.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..base.errors import CytoInputError, shortened

# Filters built into HDF5 or h5py (deflate, shuffle, Fletcher-32 checksum, szip, n-bit, scale-offset, LZF). Any other
# id would make HDF5 search its plugin path and load a shared library, so it is refused.
SAFE_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})
MAX_OBJECTS = 100_000  # an AnnData file holds a few per obs column and uns entry; far more is not a cytometry export
MAX_DEPTH = 64  # anndata nests uns dictionaries a few levels deep
VLEN_ITEM_BYTES = 16  # a variable-length element in memory before its data: a length and a pointer


@dataclass(frozen=True)
class StoredArray:
    """One dataset of the file as declared: its shape, type and size in memory once read (strings not counted)."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


@contextmanager
def open_contained(path: Path, name: str) -> Iterator[tuple[h5py.File, dict[str, StoredArray]]]:
    """The file opened read-only with the plain POSIX driver, and its datasets by path, once the whole tree has been
    checked to reach nothing outside the file (CytoInputError naming `name` otherwise)."""
    with h5py.File(path, "r", driver="sec2", locking=False) as f:
        if f.id.get_access_plist().get_driver() != h5py.h5fd.SEC2:
            raise CytoInputError(f"'{name}' asks for an HDF5 file driver this app does not use.")
        yield f, _inventory(f, name)


def _inventory(root: h5py.File, name: str) -> dict[str, StoredArray]:
    """Every object reachable from the root, visited once through hard links only; each dataset checked."""
    found: dict[str, StoredArray] = {}
    seen: set[int] = set()
    stack: list[tuple[h5py.Group, str, int]] = [(root, "", 0)]
    while stack:
        group, prefix, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CytoInputError(f"'{name}' nests its groups more than {MAX_DEPTH} levels deep.")
        for key in group.keys():
            path = f"{prefix}/{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise CytoInputError(f"'{name}' holds an external link ({shortened(path)}) to another file; "
                                     "it was not read.")
            if not isinstance(link, h5py.HardLink):
                raise CytoInputError(f"'{name}' holds a soft link ({shortened(path)}), which anndata never writes; "
                                     "it was not read.")
            item = group[key]
            info = h5py.h5o.get_info(item.id)
            if info.addr in seen or info.rc != 1:  # a second name for one object: a loop, or one array read twice
                raise CytoInputError(f"'{name}' links one object under two names ({shortened(path)}); it was not read.")
            seen.add(info.addr)
            if len(seen) > MAX_OBJECTS:
                raise CytoInputError(f"'{name}' holds more than {MAX_OBJECTS:,} HDF5 objects; it was not read.")
            if isinstance(item, h5py.Group):
                stack.append((item, path, depth + 1))
            elif isinstance(item, h5py.Dataset):
                found[path] = _checked_dataset(item, path, name)
    return found


def _checked_dataset(dataset: h5py.Dataset, path: str, name: str) -> StoredArray:
    """A dataset whose bytes are in this file, decoded by built-in filters only, of a plain numeric or text type."""
    plist = dataset.id.get_create_plist()
    where = shortened(path)
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise CytoInputError(f"'{name}' holds a virtual dataset ({where}) made of other files; it was not read.")
    if plist.get_external_count() > 0:
        raise CytoInputError(f"'{name}' keeps the data of {where} in other files (HDF5 external storage); "
                             "it was not read.")
    for i in range(plist.get_nfilters()):
        if plist.get_filter(i)[0] not in SAFE_FILTERS:
            raise CytoInputError(f"'{name}' compresses {where} with a filter this app does not read.")
    dtype = dataset.dtype
    vlen = h5py.check_string_dtype(dtype) is not None and h5py.check_vlen_dtype(dtype) is not None
    if dtype.kind not in "iufbS" and not vlen:
        raise CytoInputError(f"'{name}' stores {where} in an HDF5 type this app does not read.")
    shape = tuple(int(s) for s in (dataset.shape or ()))
    item = VLEN_ITEM_BYTES if vlen else dtype.itemsize
    return StoredArray(path, shape, dtype, int(np.prod(shape, dtype=object)) * item)
