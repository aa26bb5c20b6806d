"""Read delimited text (CSV, TSV, semicolon, whitespace) into a Dataset: numeric columns are channels."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..dataset import Dataset, make_channels, make_unique
from ..errors import CytoInputError

SNIFF_BYTES = 64 * 1024
DELIMITERS = (",", "\t", ";")
_DECIMAL_COMMA = re.compile(r"(^|;)\s*-?\d+,\d+\s*(;|$)")


def read_csv(path: Path, display_name: str | None = None) -> Dataset:
    """Load a table with a header row; text columns become annotations, rows with NaN/inf are dropped."""
    path = Path(path)
    name = display_name or path.name
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES).decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    lines = [ln for ln in head.splitlines()[:50] if ln.strip()]
    if not lines:
        raise CytoInputError(f"'{name}' is empty.")
    sep = _sniff_delimiter(lines)
    header = next(csv.reader(io.StringIO(lines[0]), delimiter=sep)) if sep else lines[0].split()
    columns = make_unique([h.strip() or f"column{i + 1}" for i, h in enumerate(header)])
    decimal = "," if sep == ";" and any(_DECIMAL_COMMA.search(ln) for ln in lines[1:]) else "."
    try:
        if sep and decimal == ".":
            table = _read_arrow(path, sep, columns, lines)
        else:
            table = pd.read_csv(path, sep=sep or r"\s+", header=0, names=columns, decimal=decimal, engine="c",
                                encoding="utf-8", encoding_errors="replace")
    except Exception as exc:  # pyarrow and pandas raise many parser error types; the user needs one sentence
        raise CytoInputError(f"'{name}' could not be read as a table ({_first_line(exc)}).") from exc
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    if table.empty:
        raise CytoInputError(f"'{name}' has a header but no rows of data.")
    if not numeric:
        raise CytoInputError(f"'{name}' has no numeric column (is it comma-, tab- or semicolon-separated with a header row?).")
    events = table[numeric].to_numpy(dtype=np.float32)
    text_cols = [c for c in table.columns if c not in numeric]
    annotations = table[text_cols].astype(object).where(table[text_cols].notna(), "").astype(str) if text_cols else pd.DataFrame()
    del table
    warnings = []
    good = np.isfinite(events).all(axis=1)
    if not good.all():
        bad = int(len(good) - good.sum())
        warnings.append(f"'{name}' has {bad:,} rows with missing or infinite numbers; they were dropped.")
        if bad == len(good):
            raise CytoInputError(f"'{name}' has no row without missing or infinite numbers.")
        events = events[good]
        if text_cols:
            annotations = annotations[good].reset_index(drop=True)
    return Dataset(
        events=events, channels=make_channels(numeric, list(numeric)), samples=[name],
        sample_ids=np.zeros(events.shape[0], np.int32), annotations=annotations, warnings=warnings, name=name,
    )


def _read_arrow(path: Path, sep: str, columns: list[str], lines: list[str]) -> pd.DataFrame:
    """Parse with pyarrow straight to float32 for the columns numeric in the first lines (half the memory of float64)."""
    complete_lines = lines[:-1] if len(lines) > 2 else lines  # the last sniffed line may be cut short
    sample = pd.read_csv(io.StringIO("\n".join(complete_lines)), sep=sep, header=0, names=columns)
    numeric = {c: pa.float32() for c in columns if pd.api.types.is_numeric_dtype(sample[c])
               and not pd.api.types.is_bool_dtype(sample[c])}
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
                               parse_options=pacsv.ParseOptions(delimiter=sep),
                               convert_options=pacsv.ConvertOptions(column_types=numeric))
    except pa.ArrowInvalid:  # a column looked numeric in the first lines but is not: let pyarrow infer every type
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
                               parse_options=pacsv.ParseOptions(delimiter=sep))
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _sniff_delimiter(lines: list[str]) -> str | None:
    """The delimiter found the same (non-zero) number of times on the first lines; None means whitespace."""
    best, best_count = None, 0
    for d in DELIMITERS:
        counts = {ln.count(d) for ln in lines}
        if len(counts) == 1 and (c := counts.pop()) > best_count:
            best, best_count = d, c
    if best is None:
        best = max(DELIMITERS, key=lambda d: lines[0].count(d))
        return best if lines[0].count(best) else None
    return best


def _first_line(exc: Exception) -> str:
    """The first line of a parser's message, without a trailing period."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
