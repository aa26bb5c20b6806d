"""Loading cytometry files (FCS, CSV/TSV) into a Dataset and writing FCS 3.1 exports."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..dataset import Dataset
from ..errors import CytoInputError
from .csv_reader import read_csv
from .fcs_reader import concat_datasets, read_fcs
from .fcs_writer import write_fcs

__all__ = ["concat_datasets", "read_csv", "read_fcs", "read_file", "read_files", "write_fcs"]

FCS_SUFFIXES = {".fcs", ".lmd"}


def read_file(path: Path, display_name: str | None = None) -> Dataset:
    """Load one file, choosing FCS or delimited text from its first bytes rather than its name."""
    path = Path(path)
    name = display_name or path.name
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    if magic == b"FCS":
        return read_fcs(path, name)
    if not magic:
        raise CytoInputError(f"'{name}' is empty.")
    if path.suffix.lower() in FCS_SUFFIXES:
        raise CytoInputError(f"'{name}' is not an FCS file (it does not start with 'FCS').")
    return read_csv(path, name)


def read_files(paths: Sequence[Path], display_names: Sequence[str] | None = None) -> Dataset:
    """Load several files as the samples of one dataset, keeping the channels they all share."""
    if not paths:
        raise CytoInputError("No file was given.")
    names = list(display_names) if display_names is not None else [Path(p).name for p in paths]
    parts = [read_file(Path(p), n) for p, n in zip(paths, names)]
    return concat_datasets(parts, parts[0].name if len(parts) == 1 else f"{len(parts)} files")
