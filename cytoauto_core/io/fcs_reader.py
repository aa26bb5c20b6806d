"""Read FCS 2.0/3.0/3.1 files into a Dataset: own HEADER/TEXT parsing, numpy DATA reading, clear errors.

flowio 1.4 is the reference these readings are tested against, but it is not used here: with
`only_text` it still refuses truncated files before showing their TEXT, it cannot parse blank
HEADER offsets, it strips '$' from values and its DATA path (Python arrays, float64) is ~10× slower.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from ..dataset import UNASSIGNED, Channel, Dataset, Spillover, make_channels, make_unique
from ..errors import CytoInputError

HEADER_BYTES = 58
POPULATIONS_KEYWORD = "CYTOAUTO_POPULATIONS"
POPULATION_CHANNEL = "population_id"
SPILL_KEYWORDS = ("$SPILLOVER", "SPILLOVER", "$SPILL", "SPILL", "$COMP", "COMP")


@dataclass
class _DataSet:
    """One data set of a file: where it starts, its HEADER version and offsets, and its TEXT keywords."""

    base: int
    version: str
    text: dict[str, str]
    header_data: tuple[int, int]


@dataclass
class _Part:
    """Events and channel table of one data set, with the sentences worth telling the user."""

    events: np.ndarray
    channels: list[Channel]
    text: dict[str, str]
    annotations: pd.DataFrame
    spillover: Spillover | None
    warnings: list[str] = field(default_factory=list)


def read_fcs(path: Path, display_name: str | None = None) -> Dataset:
    """Load every data set of an FCS file as float32 events on the instrument's scale (log channels linearised)."""
    path = Path(path)
    name = display_name or path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            data_sets = _read_data_sets(fh, size, name)
            parts = [_read_part(fh, ds, size, name) for ds in data_sets]
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    if len(parts) == 1:
        p = parts[0]
        return Dataset(
            events=p.events, channels=p.channels, samples=[name], sample_ids=np.zeros(p.events.shape[0], np.int32),
            annotations=p.annotations, spillover=p.spillover, metadata=p.text, warnings=p.warnings, name=name,
        )
    return _combine_data_sets(parts, name)


def _read_data_sets(fh: BinaryIO, size: int, name: str) -> list[_DataSet]:
    """Follow $NEXTDATA from the first data set, refusing loops and offsets outside the file."""
    out: list[_DataSet] = []
    base = 0
    seen: set[int] = set()
    while True:
        out.append(_read_header_and_text(fh, base, size, name))
        nxt = _int(out[-1].text.get("$NEXTDATA", "0"))
        if not nxt:
            return out
        base += nxt
        if base in seen or nxt < 0 or base + HEADER_BYTES > size:
            return out  # a broken $NEXTDATA link only ends the chain
        seen.add(base)


def _read_header_and_text(fh: BinaryIO, base: int, size: int, name: str) -> _DataSet:
    """Parse the 58-byte HEADER at `base` and the TEXT segment it points to."""
    fh.seek(base)
    header = fh.read(HEADER_BYTES)
    if base == 0 and not header:
        raise CytoInputError(f"'{name}' is empty.")
    if not header.startswith(b"FCS"):
        raise CytoInputError(f"'{name}' is not an FCS file (it does not start with 'FCS').")
    if len(header) < HEADER_BYTES:
        raise CytoInputError(f"'{name}' is truncated: it ends inside its FCS HEADER.")
    version = header[3:6].decode("ascii", "replace")
    try:
        offsets = [int(header[i:i + 8].strip() or b"0") for i in range(10, 42, 8)]
    except ValueError:
        raise CytoInputError(f"'{name}' has a damaged FCS HEADER (its byte offsets are not numbers).") from None
    text_start, text_stop, data_start, data_stop = offsets
    if not 0 < text_start < text_stop or base + text_stop >= size:
        raise CytoInputError(f"'{name}' is damaged: its HEADER points to a TEXT segment outside the file.")
    fh.seek(base + text_start)
    text = _parse_text(fh.read(text_stop - text_start + 1), name)
    return _DataSet(base, version, text, (data_start, data_stop))


def _parse_text(raw: bytes, name: str) -> dict[str, str]:
    """Split a TEXT segment into upper-case keywords and values; a doubled delimiter is a literal one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.rstrip("\x00 \r\n")
    if len(text) < 2:
        raise CytoInputError(f"'{name}' has an empty TEXT segment, so its channels are unknown.")
    delim = text[0]
    tokens = text[1:].replace(delim * 2, "\x00").split(delim)
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.replace("\x00", delim) for t in tokens]
    pairs = {k.strip().upper(): v for k, v in zip(tokens[::2], tokens[1::2]) if k.strip()}
    if "$PAR" not in pairs:
        raise CytoInputError(f"'{name}' is damaged: its TEXT segment has no $PAR keyword.")
    return pairs


def _read_part(fh: BinaryIO, ds: _DataSet, size: int, name: str) -> _Part:
    """Read one data set's events and turn its TEXT into channels, spillover and population annotations."""
    t = ds.text
    n_par = _int(t["$PAR"])
    if n_par is None or n_par <= 0:
        raise CytoInputError(f"'{name}' declares no channels ($PAR is {t['$PAR'].strip()!r}).")
    mode = t.get("$MODE", "L").strip().upper()
    if mode != "L":
        raise CytoInputError(f"'{name}' stores histograms ($MODE {mode}), not a list of events.")
    dtype_code = t.get("$DATATYPE", "").strip().upper()
    order = _byte_order(t.get("$BYTEORD", "1,2,3,4"), name)
    if dtype_code in ("F", "D"):
        widths = [4 if dtype_code == "F" else 8] * n_par
    elif dtype_code == "I":
        bits = [_int(t.get(f"$P{i}B", "")) or 0 for i in range(1, n_par + 1)]
        if min(bits) <= 0:
            raise CytoInputError(f"'{name}' is damaged: a $PnB bit width is missing or not a positive number.")
        if any(b % 8 for b in bits):
            odd = next(b for b in bits if b % 8)
            raise CytoInputError(f"'{name}' packs integers into {odd} bits, which this app cannot read.")
        widths = [b // 8 for b in bits]
    else:
        raise CytoInputError(f"'{name}' stores events as $DATATYPE {dtype_code or 'blank'}; only F, D and I are supported.")
    row = sum(widths)
    warnings: list[str] = []
    start, n_events = _locate_data(ds, row, size, name, warnings)
    fh.seek(ds.base + start)
    if dtype_code == "I":
        events = _read_ints(fh, n_events, widths, t, order)
    else:
        events = np.fromfile(fh, np.dtype(f"{order}f{widths[0]}"), n_events * n_par).reshape(n_events, n_par)
        events = events.astype(np.float32) if dtype_code == "D" else _to_native(events)
    names = [t.get(f"$P{i}N", "") for i in range(1, n_par + 1)]
    markers = [t.get(f"$P{i}S") for i in range(1, n_par + 1)]
    channels = make_channels(names, markers)
    annotations = pd.DataFrame()
    if POPULATIONS_KEYWORD in t and POPULATION_CHANNEL in [c.name for c in channels]:
        events, channels, annotations = _populations_to_annotation(events, channels, t[POPULATIONS_KEYWORD], name, warnings)
    spill = _find_spillover(t, channels, name, warnings)
    return _Part(events, channels, t, annotations, spill, warnings)


def _locate_data(ds: _DataSet, row: int, size: int, name: str, warnings: list[str]) -> tuple[int, int]:
    """Pick the DATA offsets (TEXT or HEADER) that fit the declared event count; return (start, n_events)."""
    t = ds.text
    text_off = (_int(t.get("$BEGINDATA", "")), _int(t.get("$ENDDATA", "")))
    cands = {"HEADER": ds.header_data if ds.header_data[0] >= HEADER_BYTES else None,
             "TEXT": text_off if None not in text_off and text_off[0] >= HEADER_BYTES else None}  # type: ignore[operator]
    order = ["HEADER", "TEXT"] if ds.version == "2.0" else ["TEXT", "HEADER"]
    cands = {k: cands[k] for k in order if cands[k] is not None}
    if not cands:
        raise CytoInputError(f"'{name}' is damaged: its HEADER and TEXT give no valid location for its events.")
    declared = _int(t.get("$TOT", ""))
    room = {k: (size - ds.base - s) // row for k, (s, _) in cands.items()}
    if declared is None:
        k = next(iter(cands))
        declared = min((cands[k][1] - cands[k][0] + 1) // row, room[k])
    if declared <= 0:
        raise CytoInputError(f"'{name}' contains no events.")
    need = declared * row

    def fits(k: str, slack: int) -> bool:
        s, e = cands[k]
        return room[k] >= declared and need <= e - s + 1 <= need + slack

    chosen = next((k for k in cands if fits(k, 1)), None) or next((k for k in cands if fits(k, 1 << 62)), None)
    if chosen is None:
        k = next(iter(cands))
        if room[k] < declared:
            raise CytoInputError(f"'{name}' is truncated: it holds {max(room[k], 0):,} of {declared:,} events.")
        raise CytoInputError(
            f"'{name}' is damaged: its data segment has room for {(cands[k][1] - cands[k][0] + 1) // row:,} "
            f"of the {declared:,} events it declares."
        )
    start, stop = cands[chosen]
    other = [k for k in cands if k != chosen and cands[k] != cands[chosen]]
    if other:
        warnings.append(
            f"'{name}' gives different data offsets in its HEADER and TEXT; the {chosen} ones match "
            f"the {declared:,} events and were used."
        )
    extra = stop - start + 1 - need
    if extra == 1:
        warnings.append(f"'{name}' marks the end of its events one byte too late (a common export bug); this was ignored.")
    elif extra > 1:
        warnings.append(f"'{name}' has {extra:,} bytes after its {declared:,} events; they were ignored.")
    return start, declared


def _read_ints(fh: BinaryIO, n: int, widths: list[int], t: dict[str, str], order: str) -> np.ndarray:
    """Integer events of any whole-byte widths, masked by $PnR and with log-amplified channels linearised."""
    n_par = len(widths)
    if len(set(widths)) == 1 and widths[0] in (1, 2, 4, 8):
        raw = np.fromfile(fh, np.dtype(f"{order}u{widths[0]}"), n * n_par).reshape(n, n_par)
        raw = _to_native(raw)
        masks = np.array([_mask(t, i, widths[0]) for i in range(1, n_par + 1)], dtype=raw.dtype)
        if (masks != np.iinfo(raw.dtype).max).any():
            raw &= masks
        out = raw.astype(np.float32)
    else:
        buf = np.fromfile(fh, np.uint8, n * sum(widths)).reshape(n, sum(widths))
        out = np.empty((n, n_par), np.float32)
        pos = 0
        for j, w in enumerate(widths):
            cols = buf[:, pos:pos + w] if order == "<" else buf[:, pos:pos + w][:, ::-1]
            val = np.zeros(n, np.uint64)
            for k in range(w):
                val |= cols[:, k].astype(np.uint64) << np.uint64(8 * k)
            val &= np.uint64(_mask(t, j + 1, w))
            out[:, j] = val
            pos += w
    for i in range(1, n_par + 1):
        decades, log0 = _log_scale(t.get(f"$P{i}E", "0,0"))
        if decades > 0:
            rng = float(_num(t.get(f"$P{i}R", "")) or 1.0)
            col = out[:, i - 1]
            np.multiply(col, decades / rng, out=col)
            np.power(np.float32(10.0), col, out=col)
            col *= log0
    return out


def _to_native(a: np.ndarray) -> np.ndarray:
    """Swap bytes in place when the file's byte order differs from the machine's (no second buffer)."""
    return a if a.dtype.isnative else a.byteswap(inplace=True).view(a.dtype.newbyteorder())


def _mask(t: dict[str, str], i: int, width: int) -> int:
    """The bit mask $PnR implies (next power of two minus one), capped at the field width."""
    full = (1 << (8 * width)) - 1
    r = _num(t.get(f"$P{i}R", ""))
    if r is None or r <= 1:
        return full
    return min(full, (1 << int(np.ceil(np.log2(r)))) - 1)


def _log_scale(value: str) -> tuple[float, float]:
    """Decades and log(0) value of $PnE ('0,0' is linear; a 0 offset means 1 by the standard)."""
    try:
        decades, log0 = (float(x) for x in value.split(","))
    except ValueError:
        return 0.0, 0.0
    return decades, (log0 or 1.0)


def _byte_order(value: str, name: str) -> str:
    """'<' for 1,2,3,4-style $BYTEORD, '>' for 4,3,2,1-style; anything else cannot be read safely."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if parts == sorted(parts):
        return "<"
    if parts == sorted(parts, reverse=True):
        return ">"
    raise CytoInputError(f"'{name}' uses the byte order {value.strip()!r}, which this app cannot read.")


def _populations_to_annotation(
    events: np.ndarray, channels: list[Channel], mapping: str, name: str, warnings: list[str]
) -> tuple[np.ndarray, list[Channel], pd.DataFrame]:
    """Turn our own population_id channel plus CYTOAUTO_POPULATIONS into a 'population' annotation."""
    try:
        id_to_name = {int(k): str(v) for k, v in json.loads(mapping).items()}
    except (ValueError, TypeError, AttributeError):
        warnings.append(f"'{name}' has an unreadable {POPULATIONS_KEYWORD} keyword; population_id was kept as a channel.")
        return events, channels, pd.DataFrame()
    j = [c.name for c in channels].index(POPULATION_CHANNEL)
    ids = np.rint(events[:, j]).astype(np.int64)
    known = np.array(sorted(id_to_name), dtype=np.int64)  # ids outside the mapping (e.g. -1) are unassigned
    categories = list(dict.fromkeys([id_to_name[k] for k in known] + [UNASSIGNED]))
    index = {c: i for i, c in enumerate(categories)}
    codes = np.full(len(ids), index[UNASSIGNED], dtype=np.int32)
    if known.size:
        pos = np.minimum(np.searchsorted(known, ids), known.size - 1)
        hit = known[pos] == ids
        codes[hit] = np.array([index[id_to_name[k]] for k in known], dtype=np.int32)[pos[hit]]
    population = pd.Categorical.from_codes(codes, categories=categories)
    keep = [i for i in range(len(channels)) if i != j]
    # our writer puts population_id last, so a (strided) view avoids copying all events
    kept = events[:, :j] if j == len(channels) - 1 else np.ascontiguousarray(events[:, keep])
    return kept, [channels[i] for i in keep], pd.DataFrame({"population": population})


def _find_spillover(t: dict[str, str], channels: list[Channel], name: str, warnings: list[str]) -> Spillover | None:
    """Parse $SPILLOVER / SPILL / $COMP into a Spillover over channel names, or warn why it was skipped."""
    key = next((k for k in SPILL_KEYWORDS if t.get(k, "").strip()), None)
    if key is None:
        return None
    tokens = [x.strip() for x in t[key].split(",")]
    n = _int(tokens[0])
    if n == 0:
        return None
    if n is None or len(tokens) not in (1 + n + n * n, 1 + n * n):
        warnings.append(f"'{name}' has a {key} keyword that could not be read, so no spillover matrix was loaded.")
        return None
    named = len(tokens) == 1 + n + n * n
    values = [_num(x) for x in tokens[len(tokens) - n * n:]]
    if named:
        targets = [_match_channel(label, channels) for label in tokens[1:1 + n]]
    else:
        fluor = [c.name for c in channels if c.kind not in ("scatter", "time")]
        targets = fluor if len(fluor) == n else [None]
    if None in targets or None in values or len(set(targets)) != n:
        warnings.append(f"'{name}' has a {key} matrix whose channels do not match the file's, so it was not loaded.")
        return None
    return Spillover(channels=list(targets), matrix=np.asarray(values, dtype=np.float64).reshape(n, n))  # type: ignore[arg-type]


def _match_channel(label: str, channels: list[Channel]) -> str | None:
    """The detector name a spillover label refers to: by $PnN, by marker, or by 1-based channel number."""
    for c in channels:
        if c.name == label:
            return c.name
    for c in channels:
        if c.marker == label:
            return c.name
    idx = _int(label)
    return channels[idx - 1].name if idx is not None and 0 < idx <= len(channels) else None


def _combine_data_sets(parts: list[_Part], name: str) -> Dataset:
    """Join a file's data sets as samples '<file> [data set k]'; ones sharing no channel name with the first are skipped."""
    first = {c.name for c in parts[0].channels}
    datasets, notes = [], []
    for k, p in enumerate(parts, start=1):
        if not first & {c.name for c in p.channels}:
            shown = ", ".join(c.name for c in p.channels[:4])
            notes.append(
                f"Data set {k} of '{name}' has none of data set 1's channels (it has {shown}, …), so it was not "
                f"loaded; files like Beckman Coulter LMD store the same events twice this way."
            )
            continue
        sample = f"{name} [data set {k}]"
        datasets.append(Dataset(
            events=p.events, channels=p.channels, samples=[sample], sample_ids=np.zeros(p.events.shape[0], np.int32),
            annotations=p.annotations, spillover=p.spillover, metadata=p.text, warnings=p.warnings, name=sample,
        ))
    combined = concat_datasets(datasets, name)
    if len(datasets) > 1:
        notes.insert(0, f"'{name}' holds {len(parts)} data sets; {len(datasets)} were loaded, each as its own sample.")
    combined.warnings[:0] = notes
    return combined


def concat_datasets(parts: list[Dataset], name: str) -> Dataset:
    """Stack datasets as the samples of one, keeping the channels all of them share (by name)."""
    if len(parts) == 1:
        return replace(parts[0], name=name)
    names = [set(p.channel_names) for p in parts]
    common = set.intersection(*names)
    keep = [n for n in parts[0].channel_names if n in common]
    files = ", ".join(f"'{p.name}'" for p in parts)
    if not keep:
        raise CytoInputError(f"The files {files} share no channel names, so they cannot be combined.")
    warnings = [w for p in parts for w in p.warnings]
    dropped = sorted(set.union(*names) - common)
    if dropped:
        shown = ", ".join(dropped[:8]) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
        warnings.append(f"Only the {len(keep)} channels that {files} all have were kept; {shown} were dropped.")
    total = sum(p.n_cells for p in parts)
    events = np.empty((total, len(keep)), np.float32)
    sample_ids = np.empty(total, np.int32)
    samples: list[str] = []
    row = 0
    for p in parts:
        np.take(p.events, p.channel_index(keep), axis=1, out=events[row:row + p.n_cells])
        sample_ids[row:row + p.n_cells] = p.sample_ids + len(samples)
        samples += p.samples
        row += p.n_cells
    spill = next((p.spillover for p in parts if p.spillover and set(p.spillover.channels) <= common), None)
    return Dataset(
        events=events, channels=[parts[0].channels[i] for i in parts[0].channel_index(keep)],
        samples=make_unique(samples), sample_ids=sample_ids, annotations=_concat_annotations(parts),
        spillover=spill, metadata=parts[0].metadata, warnings=warnings, name=name,
    )


def _concat_annotations(parts: list[Dataset]) -> pd.DataFrame:
    """Stack annotation columns; cells of a part without a column get an empty string."""
    if not any(len(p.annotations.columns) for p in parts):
        return pd.DataFrame()
    frames = [p.annotations.reset_index(drop=True) if len(p.annotations.columns) else pd.DataFrame(index=range(p.n_cells))
              for p in parts]
    out = pd.concat(frames, ignore_index=True)
    for col in out.columns:
        if out[col].isna().any():
            out[col] = out[col].astype(object).where(out[col].notna(), "")
    return out


def _int(value: str) -> int | None:
    """An integer keyword value, or None when blank or not a number."""
    try:
        return int(value.strip())
    except (ValueError, AttributeError):
        return None


def _num(value: str) -> float | None:
    """A float keyword value, or None when blank or not a number."""
    try:
        return float(value.strip())
    except (ValueError, AttributeError):
        return None
