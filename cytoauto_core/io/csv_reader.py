"""Read delimited text (CSV, TSV, semicolon, whitespace) into a Dataset: numeric columns are channels."""
from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path
from warnings import catch_warnings, simplefilter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..base.dataset import Dataset, make_channels, make_unique
from ..base.errors import CytoInputError, first_line, quoted

SNIFF_BYTES = 64 * 1024
CHECK_BYTES = 8 << 20
TYPE_SAMPLE = 1000
DELIMITERS = (",", "\t", ";")
_MISSING = {"nan", "-nan", "na", "n/a", "#n/a", "null", "none", "inf", "-inf", "+inf"}
_DECIMAL_COMMA = re.compile(r"(^|;)\s*-?\d+,\d+\s*(;|$)")


def read_csv(path: Path, display_name: str | None = None) -> Dataset:
    """Load a table with a header row; text columns become annotations, rows with NaN/inf are dropped.

    A column of numbers with a few cells that are not stays a channel: those cells' rows are dropped
    with a warning naming the column, rather than the whole channel silently becoming text."""
    path = Path(path)
    name = display_name or path.name
    try:
        _check_utf8(path, name)
        with open(path, "rb") as fh:
            raw = fh.read(SNIFF_BYTES)
            ends_open = _ends_without_line_break(fh)
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    if len(raw) == SNIFF_BYTES and not re.search(rb"[\r\n]", raw.lstrip()):
        raise CytoInputError(f"'{name}' has a header row longer than {SNIFF_BYTES // 1024} KB (tens of thousands of "
                             f"columns), so it was not read as a table.")
    head = raw.decode("utf-8-sig", errors="replace")  # only a character cut at the end
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
            table = _read_pandas(path, sep, columns, decimal, lines, name, whole=len(raw) < SNIFF_BYTES)
    except CytoInputError:
        raise
    except Exception as exc:  # pyarrow and pandas raise many parser error types; the user needs one sentence
        raise CytoInputError(f"'{name}' could not be read as a table ({first_line(exc)}).") from exc
    warnings = [f"'{name}' does not end with a line break, so its last row may be cut short."] if ends_open else []
    explained = _recover_numeric_columns(table, decimal, name, warnings)
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    if table.empty:
        raise CytoInputError(f"'{name}' has a header but no rows of data.")
    if not numeric:
        raise CytoInputError(f"'{name}' has no numeric column (is it comma-, tab- or semicolon-separated with a header row?).")
    events = table[numeric].to_numpy(dtype=np.float32)
    text_cols = [c for c in table.columns if c not in numeric]
    annotations = table[text_cols].astype(object).where(table[text_cols].notna(), "").astype(str) if text_cols else pd.DataFrame()
    del table
    good = np.isfinite(events).all(axis=1)
    if not good.all():
        bad = int(len(good) - good.sum())
        unexplained = bad - int(explained.sum()) if explained is not None else bad
        if unexplained:
            warnings.append(f"'{name}' has {unexplained:,} rows with missing or infinite numbers; they were dropped.")
        if bad == len(good):
            raise CytoInputError(f"'{name}' has no row without missing or infinite numbers.")
        events = events[good]
        if text_cols:
            annotations = annotations[good].reset_index(drop=True)
    return Dataset(
        events=events, channels=make_channels(numeric, list(numeric)), samples=[name],
        sample_ids=np.zeros(events.shape[0], np.int32), annotations=annotations, warnings=warnings, name=name,
    )


def check_table_head(head: bytes, whole: bool, name: str, delimiter: str, max_columns: int) -> None:
    """Refuse, before pandas parses it, a delimited table that would make it allocate far more than its size, from
    its first bytes (`head`; `whole`: they are the whole file): its header row must end within SNIFF_BYTES and hold
    at most `max_columns` names, and its first row must end there too and hold no more values than the header
    (pandas would make the extra ones an index, one level each). Later rows longer than the first are refused by
    pandas' own tokenizer at once."""
    parts = head[:SNIFF_BYTES].split(b"\n")
    lines = [p.decode("utf-8-sig", errors="replace").rstrip("\r") for p in (parts if whole else parts[:-1])]
    rows = list(csv.reader([ln for ln in lines if ln.strip()][:2], delimiter=delimiter))
    if not rows and head.strip():
        raise CytoInputError(f"'{name}' has a header row longer than {SNIFF_BYTES // 1024} KB, so it was not read.")
    if rows and len(rows[0]) > max_columns:
        raise CytoInputError(f"'{name}' has {len(rows[0]):,} columns; at most {max_columns:,} can be read.")
    if len(rows) == 1 and not whole:
        raise CytoInputError(f"'{name}' has a first row longer than {SNIFF_BYTES // 1024} KB, so it was not read.")
    if len(rows) == 2 and len(rows[1]) > len(rows[0]):
        raise CytoInputError(f"'{name}' has {len(rows[1]):,} values in its first row but {len(rows[0]):,} names in its "
                             f"header, so it was not read.")


def _check_utf8(path: Path, name: str) -> None:
    """Refuse a file that is not UTF-8, in one sentence naming the line of its first bad byte (read in blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHECK_BYTES)
            pending = decoder.getstate()[0]  # the start of a character cut by the previous block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                start = max(exc.start - len(pending), 0)
                line = lines + block[:start].count(b"\n") + 1
                byte = (pending + block)[exc.start:exc.start + 1]
                raise CytoInputError(
                    f"'{name}' is not UTF-8 text: line {line:,} holds the byte 0x{byte.hex()}, which UTF-8 does not "
                    f"allow (save the table as UTF-8, e.g. 'CSV UTF-8' in Excel)."
                ) from None
            if not block:
                return
            lines += block.count(b"\n")


def _ends_without_line_break(fh: io.BufferedReader) -> bool:
    """Whether a non-empty file's last byte is not a line break (so its last row may have been cut)."""
    if fh.seek(0, io.SEEK_END) == 0:
        return False
    fh.seek(-1, io.SEEK_END)
    return fh.read(1) not in (b"\n", b"\r")


def _recover_numeric_columns(table: pd.DataFrame, decimal: str, name: str, warnings: list[str]) -> np.ndarray | None:
    """Turn text columns that are mostly numbers back into numbers, in place; the other cells become NaN.

    Returns the rows that hold such a cell (they will be dropped), after warning per column with its
    count and first offending row; None when no column needed it."""
    explained = None
    for col in list(table.columns):
        values = table[col]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        if not _mostly_numbers(values.dropna().iloc[:TYPE_SAMPLE], decimal):
            continue  # a text column: decided from its first cells, without converting the whole column
        text = _as_number_text(values.astype(object).where(values.notna(), ""), decimal)
        filled = (text != "").to_numpy()
        number = pd.to_numeric(text.where(filled, "nan"), errors="coerce")
        bad = filled & number.isna().to_numpy() & ~text.str.lower().isin(_MISSING).to_numpy()
        if int(bad.sum()) > int((filled & ~bad).sum()):
            continue
        table[col] = number.astype(np.float32)
        first = int(np.flatnonzero(bad)[0]) if bad.any() else None
        if first is not None:
            shown = quoted(values.iloc[first], 30)
            count = int(bad.sum())
            cells = "1 cell" if count == 1 else f"{count:,} cells"
            what = "is not a number" if count == 1 else "are not numbers"
            warnings.append(f"'{name}' has {cells} in column {quoted(col, 40)} that {what} "
                            f"(the first in row {first + 1} below the header: {shown}); "
                            f"{'its row was' if count == 1 else 'their rows were'} dropped.")
            explained = bad if explained is None else explained | bad
    return explained


def _as_number_text(values: pd.Series, decimal: str) -> pd.Series:
    """Cells as stripped text, with a decimal comma turned into a point so pandas can parse them."""
    text = values.astype(str).str.strip()
    return text.str.replace(",", ".", regex=False) if decimal == "," else text


def _mostly_numbers(sample: pd.Series, decimal: str) -> bool:
    """Whether at least half of the non-empty cells in `sample` are numbers."""
    text = _as_number_text(sample, decimal)
    text = text[text != ""]
    return not text.empty and bool(pd.to_numeric(text, errors="coerce").notna().mean() >= 0.5)


def _read_arrow(path: Path, sep: str, columns: list[str], lines: list[str]) -> pd.DataFrame:
    """Parse with pyarrow straight to float32 for the columns numeric in the first lines (half the memory of float64)."""
    complete_lines = lines[:-1] if len(lines) > 2 else lines  # the last sniffed line may be cut short
    with catch_warnings():  # a row longer than the header: its extra values are dropped here and pyarrow refuses it
        simplefilter("ignore", pd.errors.ParserWarning)
        sample = pd.read_csv(io.StringIO("\n".join(complete_lines)), sep=sep, header=0, names=columns, index_col=False)
    numeric = {c: pa.float32() for c in columns if pd.api.types.is_numeric_dtype(sample[c])
               and not pd.api.types.is_bool_dtype(sample[c])}
    try:
        with pa.OSFile(str(path)) as raw:  # a stream, not a path: pyarrow would decompress a '.gz' or '.bz2' name
            table = pacsv.read_csv(raw, read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
                                   parse_options=pacsv.ParseOptions(delimiter=sep),
                                   convert_options=pacsv.ConvertOptions(column_types=numeric))
    except pa.ArrowInvalid:  # a column looked numeric in the first lines but is not: let pyarrow infer every type
        with pa.OSFile(str(path)) as raw:
            table = pacsv.read_csv(raw, read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
                                   parse_options=pacsv.ParseOptions(delimiter=sep))
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _read_pandas(path: Path, sep: str | None, columns: list[str], decimal: str, lines: list[str], name: str,
                 whole: bool) -> pd.DataFrame:
    """Parse a whitespace- or decimal-comma-separated table with pandas; a row longer than the header is refused.

    pandas makes the extra fields of a first row longer than the header an index, one level per field (a 20 MB file
    whose rows had 2 million fields took over 5 GB), and converts every field of a long row before it can complain.
    So the first row must fit in the sniffed lines and hold at most one field more than the header (row names, as
    R's write.table writes them, become the index); any later row longer than the first is refused by pandas'
    tokenizer, and the warning index_col=False gives for dropped fields is raised instead, as pyarrow refuses such
    rows in comma- and tab-separated files. `whole`: `lines` hold the whole file, so its last line is complete."""
    first = [] if len(lines) < 2 else lines[1].split() if sep is None else next(csv.reader([lines[1]], delimiter=sep))
    if len(first) > len(columns) + 1:
        raise CytoInputError(f"'{name}' has {len(first):,} or more values in its first row but {len(columns):,} "
                             f"names in its header, so it was not read as a table.")
    if len(lines) <= 2 and not whole:
        raise CytoInputError(f"'{name}' has a first row longer than {SNIFF_BYTES // 1024} KB, so it was not read as a "
                             f"table.")
    row_names = len(first) == len(columns) + 1
    with catch_warnings():
        simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, sep=sep or r"\s+", header=0, names=columns, decimal=decimal, engine="c",
                           encoding="utf-8-sig", index_col=None if row_names else False,
                           compression=None)  # the bytes as they are, whatever the file's name says


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

