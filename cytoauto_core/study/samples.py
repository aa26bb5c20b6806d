"""Sample metadata of a dataset: one row per sample with its display name, condition, patient, batch and any other
column.

The table is what turns files into a study: it says which samples are compared and which belong together.
It is validated against the dataset's samples (each exactly once) and stored atomically in the dataset folder, beside
each sample's descriptive file keywords ($FIL, TUBE NAME, $DATE, …) that a column can be filled from.
"""
from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

import pandas as pd

from ..base.dataset import Dataset, make_unique
from ..base.errors import CytoInputError, first_line, quoted
from ..base.storage import atomic_write_json, read_json
from ..io import combine_files, read_each
from ..io.csv_reader import SNIFF_BYTES, check_table_head
from ..store.workspace import Workspace

SAMPLE = "sample"
DISPLAY = "display name"  # how plots and the report name the sample; not a grouping
DEFAULT_COLUMNS = (SAMPLE, DISPLAY, "condition", "patient", "batch")
FILE_NAME = "sample_metadata.json"
KEYWORDS_FILE = "sample_keywords.json"
SHORT_NAME = 24  # longest sample name in a plot; longer ones keep their start and end around an ellipsis
SEPARATORS = " _-.()[]"
_TOKENS = re.compile(r"([ _\-.()\[\]]+)")
_STRUCTURAL = re.compile(r"^(\$?P\d+[A-Z]+|\$(BEGIN|END)\w*|\$NEXTDATA|\$BYTEORD|\$DATATYPE|\$MODE|\$PAR|"
                         r"\$?SPILL(OVER)?|\$COMP|FLOWCORE_.*)$", re.I)
KEYWORD_MAX_CHARS = 200
MAX_BYTES = 10 << 20  # a table of one row per sample; every cell becomes a Python string (~50 bytes each)
MAX_COLUMNS = 200


def template(samples: list[str], existing: pd.DataFrame | None = None) -> pd.DataFrame:
    """A table to fill in: one row per sample, the default columns, values from `existing` where it has them, and
    each display name not given yet filled with the sample's short name (see short_names)."""
    frame = pd.DataFrame({SAMPLE: samples})
    columns = list(DEFAULT_COLUMNS[1:]) if existing is None else [c for c in existing.columns if c != SAMPLE]
    if DISPLAY not in columns:  # a table stored before display names existed
        columns.insert(0, DISPLAY)
    for column in columns:
        frame[column] = None if existing is None or column not in existing else \
            existing.set_index(SAMPLE)[column].reindex(samples).to_numpy()
    frame[DISPLAY] = list(short_names(samples, frame).values())
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
    if DISPLAY in frame:
        shown = frame[DISPLAY].dropna()
        if shown.duplicated().any():
            raise CytoInputError(f"{source} gives the display name {quoted(shown[shown.duplicated()].iloc[0])} to more "
                                 "than one sample; give each sample its own.")
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


def groupings(table: pd.DataFrame) -> list[str]:
    """The columns samples can be grouped or paired by: every filled-in one but the sample and its display name."""
    return [c for c in table.columns if c not in (SAMPLE, DISPLAY) and table[c].notna().any()]


def confounded(table: pd.DataFrame, column: str, among: Sequence[str] | None = None) -> list[str]:
    """The other grouping columns, filled in for every sample considered, that split those samples exactly as `column`
    does (each value of one goes with one value of the other): between their groups, a difference in `column` cannot
    be told from a difference in theirs. Considered: the samples whose `column` is filled in (and in `among`)."""
    rows = table[table[column].notna()]
    if among is not None:
        rows = rows[rows[column].isin(list(among))]
    if rows[column].nunique() < 2:
        return []
    return [other for other in groupings(table) if other != column and _same_split(rows, column, other)]


def _same_split(rows: pd.DataFrame, a: str, b: str) -> bool:
    """Whether every row has a `b` and each value of `a` goes with one value of `b` and each of `b` with one of `a`."""
    return bool(rows[b].notna().all()) and \
        len(rows[[a, b]].drop_duplicates()) == rows[a].nunique() == rows[b].nunique()


def short_names(samples: list[str], table: pd.DataFrame | None = None) -> dict[str, str]:
    """Each sample's name for plots, unique and at most SHORT_NAME characters: its display name where the table gives
    one, else its file name shortened (see shorten)."""
    given = {} if table is None or DISPLAY not in table else \
        table.set_index(SAMPLE)[DISPLAY].dropna().to_dict()
    shortened = dict(zip(samples, shorten(samples)))
    chosen = [_capped(given.get(s) or shortened[s]) for s in samples]
    return dict(zip(samples, make_unique(chosen)))


def shorten(names: list[str]) -> list[str]:
    """Long file names made short by what tells them apart: the prefix and suffix all of them share (at a word
    boundary) and the words all of them hold are dropped, as long as the names stay distinct; then capped at
    SHORT_NAME characters. One name loses its extension only."""
    if len(names) < 2:
        return [_capped(PurePath(n).stem or n) for n in names]
    trimmed = _without_common_affixes(names)
    fewer = _without_common_words(trimmed)
    for candidate in (fewer, trimmed):
        if all(candidate) and len(set(candidate)) == len(candidate):
            return [_capped(n) for n in candidate]
    return [_capped(n) for n in names]


def _without_common_affixes(names: list[str]) -> list[str]:
    """The names without the prefix and suffix every one of them starts and ends with, cut at a separator."""
    prefix = os.path.commonprefix(names)
    cut = max((i + 1 for i, ch in enumerate(prefix) if ch in SEPARATORS), default=0)
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1]
    tail = next((len(suffix) - i for i, ch in enumerate(suffix) if ch in SEPARATORS), 0)
    return [n[cut:len(n) - tail].strip(SEPARATORS) for n in names]


def _without_common_words(names: list[str]) -> list[str]:
    """The names without the words (runs between separators) that every one of them holds."""
    split = [_TOKENS.split(n) for n in names]
    common = set.intersection(*(set(parts[::2]) for parts in split)) - {""}
    return ["".join(parts[i] + (parts[i + 1] if i + 1 < len(parts) else "")
                    for i in range(0, len(parts), 2) if parts[i] not in common).strip(SEPARATORS) for parts in split]


def _capped(name: str) -> str:
    """`name` cut to SHORT_NAME characters, keeping its start and its end (where sample numbers often are)."""
    if len(name) <= SHORT_NAME:
        return name
    head = (SHORT_NAME - 1) * 2 // 3
    return f"{name[:head]}…{name[len(name) - (SHORT_NAME - 1 - head):]}"


def read_study(paths: Sequence[Path], names: Sequence[str]) -> tuple[Dataset, dict[str, dict[str, str]]]:
    """The files as io.read_files reads them (one dataset, one sample per file or data set), and each sample's
    descriptive keywords, which the dataset keeps for its first file only."""
    parts = read_each(paths, names)
    dataset = combine_files(parts)
    owners = [part.metadata for part in parts for _ in part.samples]
    return dataset, {sample: descriptive(keywords) for sample, keywords in zip(dataset.samples, owners)}


def descriptive(keywords: dict[str, str]) -> dict[str, str]:
    """The keywords that describe a sample ($FIL, TUBE NAME, $DATE, …): none per parameter ($PnN, …), none about the
    file's layout or spillover, none longer than KEYWORD_MAX_CHARS, none empty."""
    return {k: str(v).strip() for k, v in keywords.items()
            if not _STRUCTURAL.match(k) and str(v).strip() and len(str(v)) <= KEYWORD_MAX_CHARS}


def save_keywords(workspace: Workspace, key: str, keywords: dict[str, dict[str, str]]) -> None:
    """Store each sample's descriptive keywords in the dataset folder."""
    atomic_write_json(workspace.dataset_dir(key) / KEYWORDS_FILE, keywords)


def load_keywords(workspace: Workspace, key: str, dataset: Dataset) -> dict[str, dict[str, str]]:
    """Each sample's stored keywords; a one-sample dataset has its file's own; none for samples stored without."""
    stored = read_json(workspace.dataset_dir(key) / KEYWORDS_FILE) or {}
    if not stored and len(dataset.samples) == 1:
        stored = {dataset.samples[0]: descriptive(dataset.metadata)}
    return {s: stored[s] for s in dataset.samples if isinstance(stored.get(s), dict)}


def keyword_choices(keywords: dict[str, dict[str, str]], samples: list[str]) -> list[str]:
    """The keywords every sample has and that differ between samples (so they can name or group them), in file
    order."""
    if len(keywords) < len(samples) or not samples:
        return []
    first = keywords[samples[0]]
    return [k for k in first if all(k in keywords[s] for s in samples) and len({keywords[s][k] for s in samples}) > 1]


def fill_from_keyword(table: pd.DataFrame, column: str, keyword: str,
                      keywords: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The table with `column` set to each sample's `keyword` (shortened, see shorten, for the display name)."""
    found = [keywords.get(s, {}).get(keyword) for s in table[SAMPLE]]
    filled = table.copy()
    filled[column] = shorten(found) if column == DISPLAY and all(found) else found
    return filled


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
