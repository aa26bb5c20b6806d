"""Sample metadata of a dataset: one row per sample with its condition, patient, batch and any other column.

The table is what turns files into a study: it says which samples are compared and which belong together.
It is validated against the dataset's samples (each exactly once) and stored atomically in the dataset folder.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path, PurePath

import pandas as pd

from .errors import CytoInputError, first_line, quoted
from .io.csv_reader import SNIFF_BYTES, check_table_head
from .storage import atomic_write_json, read_json
from .workspace import Workspace

SAMPLE = "sample"
DEFAULT_COLUMNS = (SAMPLE, "condition", "patient", "batch")
FILE_NAME = "sample_metadata.json"
MAX_BYTES = 10 << 20  # a table of one row per sample; every cell becomes a Python string (~50 bytes each)
MAX_COLUMNS = 200


def template(samples: list[str], existing: pd.DataFrame | None = None) -> pd.DataFrame:
    """A table to fill in: one row per sample, the default columns, values from `existing` where it has them."""
    frame = pd.DataFrame({SAMPLE: samples})
    columns = list(DEFAULT_COLUMNS[1:]) if existing is None else [c for c in existing.columns if c != SAMPLE]
    for column in columns:
        frame[column] = None if existing is None else existing.set_index(SAMPLE)[column].reindex(samples).to_numpy()
    return frame.astype(object)


def validate(table: pd.DataFrame, samples: list[str], source: str = "the sample table") -> pd.DataFrame:
    """The table cleaned (text values, blanks as missing, rows in the dataset's sample order), or CytoInputError.

    Every sample of the dataset must appear exactly once; a sample may be named by its file name or its stem.
    """
    columns = [str(c).strip() for c in table.columns]
    if SAMPLE not in columns:
        raise CytoInputError(f"{source} needs a column named '{SAMPLE}' holding the sample (file) names.")
    if any(not c for c in columns) or len(set(columns)) != len(columns):
        raise CytoInputError(f"{source} has an empty or repeated column name; give every column its own name.")
    frame = table.copy()
    frame.columns = columns
    frame = frame.astype(object).map(_clean).astype(object)
    frame = frame.dropna(how="all")
    names = frame[SAMPLE].map(_resolver(samples, source))
    repeated = names[names.duplicated()].unique()
    if len(repeated):
        raise CytoInputError(f"{source} lists sample '{repeated[0]}' more than once; give each sample one row.")
    missing = [s for s in samples if s not in set(names)]
    if missing:
        raise CytoInputError(f"{source} has no row for sample '{missing[0]}'"
                             f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
                             "every sample of the dataset needs one.")
    frame[SAMPLE] = names.to_numpy()
    ordered = frame.set_index(SAMPLE).loc[samples].reset_index().astype(object)
    return ordered.where(ordered.notna(), None)


def read_table(data: bytes, file_name: str, samples: list[str]) -> pd.DataFrame:
    """Parse an uploaded CSV/TSV sample table (every value kept as text) and validate it; one too large or too wide
    for a sample table is refused before it is parsed."""
    if len(data) > MAX_BYTES:
        raise CytoInputError(f"'{file_name}' holds {len(data) / (1 << 20):,.0f} MB; a sample table (one row per sample) "
                             f"of at most {MAX_BYTES >> 20} MB can be read.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CytoInputError(f"'{file_name}' is not a UTF-8 text file.") from exc
    if not text.strip():
        raise CytoInputError(f"'{file_name}' is empty.")
    try:
        delimiter = csv.Sniffer().sniff(text[:SNIFF_BYTES].splitlines()[0], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    check_table_head(data[:SNIFF_BYTES], len(data) <= SNIFF_BYTES, file_name, delimiter, MAX_COLUMNS)
    try:
        cells = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, header=None)
    except (pd.errors.ParserError, ValueError) as exc:
        raise CytoInputError(f"'{file_name}' could not be read as a table ({first_line(exc)}).") from exc
    header = cells.iloc[0].tolist()  # read as a row, so repeated or empty names reach validate as written
    return validate(pd.DataFrame(cells.iloc[1:].to_numpy(), columns=header), samples, f"'{file_name}'")


def save(workspace: Workspace, key: str, table: pd.DataFrame) -> None:
    """Store a validated table in the dataset folder (atomic, so a crash keeps the previous one)."""
    atomic_write_json(_path(workspace, key), {"columns": list(table.columns),
                                             "rows": table.astype(object).where(table.notna(), None).values.tolist()})


def load(workspace: Workspace, key: str, samples: list[str]) -> pd.DataFrame | None:
    """The stored table of dataset `key`, validated again against its samples, or None when none is stored."""
    stored = read_json(_path(workspace, key))
    if stored is None:
        return None
    return validate(pd.DataFrame(stored["rows"], columns=stored["columns"]), samples, "The stored sample table")


def values(table: pd.DataFrame, column: str) -> list[str]:
    """The distinct filled-in values of `column`, in order of first appearance."""
    return list(dict.fromkeys(table[column].dropna()))


def _path(workspace: Workspace, key: str) -> Path:
    return workspace.dataset_dir(key) / FILE_NAME


def _clean(value: object) -> str | None:
    """A cell as stripped text; empty text and missing values become None."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _resolver(samples: list[str], source: str):
    """Map a name in the table to the dataset's sample: exact name first, else a unique file-name stem."""
    stems: dict[str, list[str]] = {}
    for s in samples:
        stems.setdefault(PurePath(s).stem, []).append(s)
    known = set(samples)

    def resolve(name: str | None) -> str:
        if name is None:
            raise CytoInputError(f"{source} has a row with no sample name; fill it in or delete the row.")
        if name in known:
            return name
        if len(stems.get(name, [])) == 1:
            return stems[name][0]
        raise CytoInputError(f"{source} names sample {quoted(name)}, which is not in this dataset.")

    return resolve
