"""A marker table: what the biologist already knows about each population's markers (CD4 T cells = CD3+ CD4+ CD8−).

It is read from a small CSV (first column the population names, one column per marker, cells +1 / −1 / blank) that
is untrusted: it is bounded in size before it is parsed, parsed as text only, and every problem is one sentence
naming the file. Its markers are matched to a dataset's channels by name, so populations can be named with no clicks.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from ..base.dataset import Dataset
from ..base.errors import CytoInputError, quoted
from ..base.labelled import name_key

MAX_BYTES = 1 << 20  # a table of a few hundred populations × markers is a few hundred KB at most
MAX_POPULATIONS = 500
MAX_MARKERS = 500
EXPRESSED, NOT_EXPRESSED, NOT_INFORMATIVE = 1, -1, 0
_VALUES = {  # a cell's text, stripped and case-folded → its value
    **dict.fromkeys(("1", "+1", "+", "pos", "positive", "1.0", "+1.0"), EXPRESSED),
    **dict.fromkeys(("-1", "−1", "-", "−", "neg", "negative", "-1.0", "−1.0"), NOT_EXPRESSED),
    **dict.fromkeys(("", "0", "0.0", "na", "n/a", "nan"), NOT_INFORMATIVE),
}
_DELIMITERS = (",", ";", "\t")
_DAMAGED = "The stored marker table is damaged, so it was not loaded; read the table again."


@dataclass
class MarkerTable:
    """Expected expression per population (rows) and marker (columns): +1 expressed, −1 not, 0 not informative."""

    populations: list[str]
    markers: list[str]
    values: np.ndarray  # int8, populations × markers

    def to_dict(self) -> dict:
        """The table as JSON-ready lists, to store it in the workspace."""
        return {"populations": list(self.populations), "markers": list(self.markers), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "MarkerTable":
        """A stored table, checked again as a read one is (a damaged store is refused in one sentence)."""
        try:
            values = np.asarray(d["values"], dtype=np.int64)
            populations, markers = [str(p) for p in d["populations"]], [str(m) for m in d["markers"]]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CytoInputError(_DAMAGED) from exc
        if values.shape != (len(populations), len(markers)) or not np.isin(values, (-1, 0, 1)).all():
            raise CytoInputError(_DAMAGED)
        return _checked(populations, markers, values.astype(np.int8), "The stored marker table")


@dataclass
class MarkerMatch:
    """A table's markers matched to a dataset's channels: (table marker, channel name) pairs in the table's order, and
    one sentence for each marker left out (no channel, two, or one an earlier marker took)."""

    pairs: list[tuple[str, str]]
    notes: list[str]


def channel_key(text: object) -> str:
    """How a table marker and a channel's name or marker are matched: as population names are (labelled.name_key:
    case, spaces and underscores ignored), hyphens ignored too ('HLA-DR' == 'hla_dr' == 'HLADR')."""
    return name_key(str(text).replace("-", ""))


def read_marker_table(data: bytes, file_name: str) -> MarkerTable:
    """Parse an uploaded marker table (CSV, TSV or ;-separated; a UTF-8 BOM is fine) and check it, or CytoInputError.
    A row shorter than the header is blank (not informative) for its missing markers, as spreadsheets save it."""
    src = quoted(file_name)
    if len(data) > MAX_BYTES:
        raise CytoInputError(f"{src} holds {len(data) / (1 << 20):,.1f} MB; a marker table of at most "
                             f"{MAX_BYTES >> 20} MB can be read.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CytoInputError(f"{src} is not UTF-8 text (save the table as UTF-8, e.g. 'CSV UTF-8' in Excel).") from exc
    rows = _rows(text, src)
    if not rows:
        raise CytoInputError(f"{src} is empty.")
    header, body = rows[0], rows[1:]
    markers = [m.strip() for m in header[1:]]
    populations, values = [], np.zeros((len(body), len(markers)), np.int8)
    for i, row in enumerate(body):
        name = row[0].strip()
        if not name:
            raise CytoInputError(f"{src} has a row with values but no population name; give every row its population.")
        while len(row) > len(header) and not row[-1].strip():  # spare blank cells past the header's end
            row = row[:-1]
        if len(row) > len(header):
            raise CytoInputError(f"{src} has {len(row)} values in the row of {quoted(name)} but {len(header)} columns "
                                 f"in its header, so it was not read.")
        populations.append(name)
        for j, cell in enumerate(row[1:]):
            value = _VALUES.get(cell.strip().casefold())
            if value is None:
                raise CytoInputError(f"{src} gives population {quoted(name)} the value {quoted(cell.strip())} for "
                                     f"marker {quoted(markers[j])}; use 1 (expressed), -1 (not expressed) or leave "
                                     f"it blank (not informative).")
            values[i, j] = value
    kept = [j for j, m in enumerate(markers) if m or values[:, j].any()]  # an unnamed column of blanks: Excel's spare
    return _checked(populations, [markers[j] for j in kept], values[:, kept], src)


def _rows(text: str, src: str) -> list[list[str]]:
    """The table's non-blank rows as text cells (csv module only), refused when it has too many rows or columns."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(_DELIMITERS, key=first.count)  # a tie (none of them) reads it as one column
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > MAX_MARKERS + 1:
                raise CytoInputError(f"{src} has {len(row):,} columns; a marker table of at most {MAX_MARKERS} "
                                     f"markers can be read.")
            if len(rows) > MAX_POPULATIONS:
                raise CytoInputError(f"{src} has more than {MAX_POPULATIONS} rows; a marker table of at most "
                                     f"{MAX_POPULATIONS} populations can be read.")
            rows.append(row)
    except csv.Error as exc:
        raise CytoInputError(f"{src} could not be read as a table (a cell is too long or its quotes are not "
                             f"closed).") from exc
    return rows


def _checked(populations: list[str], markers: list[str], values: np.ndarray, src: str) -> MarkerTable:
    """The table if its names are all given and distinct and every population can be told from the others."""
    if not markers:
        raise CytoInputError(f"{src} has no marker columns; put the population names in the first column and one "
                             f"marker per further column.")
    _distinct(markers, "marker", channel_key, src)
    _distinct(populations, "population", name_key, src)
    if not populations:
        raise CytoInputError(f"{src} has no population rows below its header.")
    for name, row in zip(populations, values):
        if not row.any():
            raise CytoInputError(f"{src} gives population {quoted(name)} no informative marker (every value is blank, "
                                 f"NA or 0), so no cell could be named by it.")
    first_with: dict[bytes, int] = {}
    for i, row in enumerate(values):
        other = first_with.setdefault(row.tobytes(), i)
        if other != i:
            raise CytoInputError(f"{src} gives populations {quoted(populations[other])} and {quoted(populations[i])} "
                                 f"the same value for every marker, so it cannot tell them apart; add a marker that "
                                 f"differs or merge them.")
    return MarkerTable(populations=populations, markers=markers, values=values)


def _distinct(names: list[str], what: str, key, src: str) -> None:
    """Refuse an empty name, or two names that `key` matches as one (a population or marker given twice)."""
    seen: dict[str, str] = {}
    for name in names:
        if not name:
            raise CytoInputError(f"{src} has a {what} with no name; give every {what} its name.")
        if key(name) in seen:
            earlier = seen[key(name)]
            also = "" if earlier == name else f" (as {quoted(earlier)} and {quoted(name)})"
            raise CytoInputError(f"{src} names {what} {quoted(earlier)} twice{also}; give each {what} one "
                                 f"{'row' if what == 'population' else 'column'}.")
        seen[key(name)] = name


def match_markers(table: MarkerTable, dataset: Dataset) -> MarkerMatch:
    """Each table marker's channel: the one whose name or marker ($PnS) is spelled the same, else the one channel_key
    matches; a marker with no channel, with two, or whose channel an earlier marker took, is left out with a note."""
    src = quoted(dataset.name)
    pairs: list[tuple[str, str]] = []
    taken: dict[str, str] = {}
    notes = []
    keys = [(c.name, {channel_key(c.name), channel_key(c.marker)}) for c in dataset.channels]
    for marker in table.markers:
        found = [c.name for c in dataset.channels if marker in (c.name, c.marker)] or \
            [name for name, spelled in keys if channel_key(marker) in spelled]
        if not found:
            notes.append(f"The marker table's {quoted(marker)} matches no channel of {src}; it is left out.")
        elif len(found) > 1:
            notes.append(f"The marker table's {quoted(marker)} matches {len(found)} channels of {src} "
                         f"({', '.join(quoted(f) for f in found[:3])}); it is left out.")
        elif found[0] in taken:
            notes.append(f"The marker table's {quoted(marker)} matches channel {quoted(found[0])} of {src}, which "
                         f"{quoted(taken[found[0]])} already matches; it is left out.")
        else:
            taken[found[0]] = marker
            pairs.append((marker, found[0]))
    return MarkerMatch(pairs=pairs, notes=notes)
