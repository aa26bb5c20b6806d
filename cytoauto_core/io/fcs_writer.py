"""Write events as FCS 3.1 (float32, little-endian), with extra result channels and population names.

Usage: `write_fcs(path, dataset)` writes a Dataset (a "population" annotation becomes a
population_id channel plus the legend keywords); `write_fcs(path, events,
channel_names=[...])` writes a bare array. `extra_channels` ({name: per-cell values}) are
appended after the events; `metadata` keywords are added to (and override) the dataset's.
The id → name legend is written twice: CYTOAUTO_POPULATIONS (JSON, what our reader reads) and one
CYTOAUTO_POPULATION_<id> keyword per population (what a person reads in FlowJo's keyword list).
Events are written as read (gains divided out, Time in seconds), so $TIMESTEP becomes 1 and no $PnG is written.
Every $PnR is one more than the channel's largest value, so no value (a population id above all) is
at or past the range FlowJo clips to.
The TEXT delimiter is the first of DELIMITERS that no keyword or value holds: flowio (and FlowKit, which parses
with it) misreads a doubled delimiter at the start or end of a value, e.g. a FILENAME of "/tmp/x". Empty values,
which FCS forbids, are dropped (a blank one is kept); copied keywords the export makes false ($TIMESTEP,
$ORIGINALITY) are rewritten.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.dataset import UNASSIGNED, Dataset, Spillover
from ..base.storage import atomic_file
from .fcs_reader import POPULATION_CHANNEL, POPULATIONS_KEYWORD, SPILL_KEYWORDS

LEGEND_PREFIX = "CYTOAUTO_POPULATION_"
HEADER_LIMIT = 99_999_999
CHUNK_ROWS = 1 << 16
DELIMITERS = ("/", "|", "\x0c", "\x1e", "\x1f")  # flowio escapes '|' for its regex; the rest need no escaping
OVERRIDES = {"$TIMESTEP": "1",  # the events are already in seconds: the reader multiplied Time by the file's step
             "$ORIGINALITY": "DataModified"}  # FCS 3.1: values were linearised and channels appended
_REGENERATED = re.compile(
    r"^\$?P\d+[A-Z]+$|^\$(PAR|TOT|BEGIN\w+|END\w+|NEXTDATA|BYTEORD|DATATYPE|MODE)$"
    rf"|^{POPULATIONS_KEYWORD}$|^{LEGEND_PREFIX}-?\d+$", re.I
)


def write_fcs(
    path: Path,
    data: Dataset | np.ndarray,
    channel_names: Sequence[str] | None = None,
    *,
    markers: Sequence[str] | None = None,
    extra_channels: dict[str, np.ndarray] | None = None,
    population_names: dict[int, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `data` (a Dataset, or an n × p array with `channel_names`) plus `extra_channels` to `path`, atomically."""
    extra = dict(extra_channels or {})
    keywords: dict[str, str] = {}
    spill = None
    if isinstance(data, Dataset):
        events, names = data.events, data.channel_names
        markers = [c.marker for c in data.channels]
        keywords.update(data.metadata)
        spill = data.spillover
        if "population" in data.annotations.columns and POPULATION_CHANNEL not in extra:
            ids, found = _population_ids(data.annotations["population"])
            extra[POPULATION_CHANNEL] = ids
            population_names = {**found, **(population_names or {})}
    else:
        if channel_names is None or len(channel_names) != data.shape[1]:
            raise ValueError("channel_names must name every column of the events array")
        events, names = data, list(channel_names)
    keywords.update(metadata or {})
    keywords = {k.strip(): OVERRIDES.get(k.strip().upper(), str(v)) for k, v in keywords.items()
                if k.strip() and str(v) and not _REGENERATED.match(k.strip())
                and k.strip().upper() not in SPILL_KEYWORDS}
    if population_names:
        keywords[POPULATIONS_KEYWORD] = json.dumps({str(k): v for k, v in sorted(population_names.items())})
        keywords.update({f"{LEGEND_PREFIX}{k}": v for k, v in sorted(population_names.items())})
    if spill is not None:
        keywords["$SPILLOVER"] = _spill_text(spill)
    n = events.shape[0]
    for key, values in extra.items():
        if np.shape(values) != (n,):
            raise ValueError(f"extra channel {key!r} must hold one value per cell")
    all_names = list(names) + list(extra)
    all_markers = list(markers or names) + list(extra)
    maxima = np.concatenate([events.max(axis=0, initial=1.0) if n else np.ones(len(names)),
                             [np.max(np.asarray(v, np.float64), initial=1.0) for v in extra.values()]])
    path = Path(path)
    with atomic_file(path) as fh:  # never half a file, even when two processes write the same path
        data_bytes = n * len(all_names) * 4
        fh.write(_header_and_text(all_names, all_markers, maxima, n, data_bytes, keywords))
        _write_events(fh, events, list(extra.values()))
    return path


def _population_ids(column: pd.Series) -> tuple[np.ndarray, dict[int, str]]:
    """Per-cell ids 1..k for named populations (sorted by name), 0 for unassigned or empty."""
    values = column.astype(object).where(column.notna(), "").astype(str).to_numpy()
    codes, uniques = pd.factorize(values, sort=True)
    ids = np.zeros(len(uniques), np.float32)
    mapping: dict[int, str] = {}
    for i, label in enumerate(uniques):
        if label.strip() and label != UNASSIGNED:
            ids[i] = len(mapping) + 1
            mapping[len(mapping) + 1] = label
    return ids[codes], mapping


def _spill_text(spill: Spillover) -> str:
    """The $SPILLOVER value: n, the channel names, then the matrix row by row."""
    values = ",".join(repr(float(v)) for v in np.asarray(spill.matrix, np.float64).ravel())
    return f"{len(spill.channels)},{','.join(spill.channels)},{values}"


def _header_and_text(names: list[str], markers: list[str], maxima: np.ndarray, n: int, data_bytes: int,
                     keywords: dict[str, str]) -> bytes:
    """HEADER plus TEXT; data offsets are written 20 digits wide so the TEXT length does not depend on them."""
    text_len = len(_encode_text(text_pairs(names, markers, maxima, n, 0, 0, keywords)))
    begin = 58 + text_len
    end = begin + data_bytes - 1 if data_bytes else begin
    fits = end <= HEADER_LIMIT
    header = "FCS3.1    " + "".join(f"{v:>8}" for v in (58, 57 + text_len, begin if fits else 0, end if fits else 0, 0, 0))
    return header.encode("ascii") + _encode_text(text_pairs(names, markers, maxima, n, begin, end, keywords))


def text_pairs(names: list[str], markers: list[str], maxima: np.ndarray, n: int, begin: int, end: int,
               keywords: dict[str, str]) -> list[tuple[str, str]]:
    """Every TEXT keyword and value in writing order: data layout, channels, then `keywords` (what readers must see)."""
    pairs = [
        ("$BEGINANALYSIS", "0"), ("$ENDANALYSIS", "0"), ("$BEGINSTEXT", "0"), ("$ENDSTEXT", "0"),
        ("$BEGINDATA", f"{begin:020d}"), ("$ENDDATA", f"{end:020d}"),
        ("$BYTEORD", "1,2,3,4"), ("$DATATYPE", "F"), ("$MODE", "L"), ("$NEXTDATA", "0"),
        ("$PAR", str(len(names))), ("$TOT", str(n)),
    ]
    for i, (name, marker, top) in enumerate(zip(names, markers, maxima), start=1):
        pairs += [(f"$P{i}N", name), (f"$P{i}B", "32"), (f"$P{i}E", "0,0"),
                  (f"$P{i}R", str(max(int(np.floor(top)) + 1, 1)) if np.isfinite(top) else "262144")]
        if marker and marker != name:
            pairs.append((f"$P{i}S", marker))
    return pairs + list(keywords.items())


def _encode_text(pairs: list[tuple[str, str]]) -> bytes:
    """The TEXT segment as UTF-8, each keyword and value ended by the delimiter and any delimiter inside doubled."""
    d = _delimiter_for([s for pair in pairs for s in pair])
    return (d + "".join(f"{k.replace(d, d * 2)}{d}{v.replace(d, d * 2)}{d}" for k, v in pairs)).encode("utf-8")


def _delimiter_for(texts: list[str]) -> str:
    """The first candidate no text holds; else the one fewest texts start or end with (flowio misreads those)."""
    def cost(d: str) -> tuple[int, int]:
        return sum(t.startswith(d) or t.endswith(d) for t in texts), sum(d in t for t in texts)
    return min(DELIMITERS, key=cost)


def _write_events(fh, events: np.ndarray, extra: list[np.ndarray]) -> None:
    """Write rows as little-endian float32 with numpy, in chunks when extra columns must be interleaved."""
    if not extra and events.dtype == np.dtype("<f4") and events.flags.c_contiguous:
        events.tofile(fh)
        return
    p = events.shape[1]
    block = np.empty((min(CHUNK_ROWS, events.shape[0]), p + len(extra)), "<f4")
    for start in range(0, events.shape[0], CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, events.shape[0])
        out = block[: stop - start]
        out[:, :p] = events[start:stop]
        for j, values in enumerate(extra):
            out[:, p + j] = values[start:stop]
        out.tofile(fh)
