"""Reading and writing every format: FCS, CSV/TSV, AnnData .h5ad, FlowJo workspaces, marker tables, and
the exports of labelled cells (CSV, FCS, h5ad), whole or sample by sample.

May import: base, prep."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..base.dataset import Dataset
from ..base.errors import CytoInputError
from .csv_reader import read_csv
from .fcs_reader import concat_datasets, read_fcs
from .fcs_writer import write_fcs
from .h5ad import HDF5_MAGIC, write_h5ad
from .h5ad_reader import read_h5ad

__all__ = ["combine_files", "concat_datasets", "read_csv", "read_each", "read_fcs", "read_file", "read_files", "read_h5ad",
           "write_fcs", "write_h5ad"]

FCS_SUFFIXES = {".fcs", ".lmd"}
H5AD_SUFFIX = ".h5ad"


def read_file(path: Path, display_name: str | None = None) -> Dataset:
    """Load one file, choosing FCS, AnnData (HDF5) or delimited text from its first bytes rather than its name."""
    path = Path(path)
    name = display_name or path.name
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(HDF5_MAGIC))
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    if magic.startswith(b"FCS"):
        return read_fcs(path, name)
    if magic == HDF5_MAGIC:
        return read_h5ad(path, name)
    if not magic:
        raise CytoInputError(f"'{name}' is empty.")
    if path.suffix.lower() == H5AD_SUFFIX:
        raise CytoInputError(f"'{name}' is not an AnnData file (it is not HDF5).")
    if path.suffix.lower() in FCS_SUFFIXES:
        raise CytoInputError(f"'{name}' is not an FCS file (it does not start with 'FCS').")
    return read_csv(path, name)


def read_files(paths: Sequence[Path], display_names: Sequence[str] | None = None) -> Dataset:
    """Load several files as the samples of one dataset, keeping the channels they all share."""
    return combine_files(read_each(paths, display_names))


def read_each(paths: Sequence[Path], display_names: Sequence[str] | None = None) -> list[Dataset]:
    """Each file as its own dataset (named `display_names`, else the file name), for combine_files."""
    if not paths:
        raise CytoInputError("No file was given.")
    names = list(display_names) if display_names is not None else [Path(p).name for p in paths]
    return [read_file(Path(p), n) for p, n in zip(paths, names)]


def combine_files(parts: Sequence[Dataset]) -> Dataset:
    """The files read by read_each as one dataset: named after the file, or 'N files'."""
    return concat_datasets(list(parts), parts[0].name if len(parts) == 1 else f"{len(parts)} files")
