"""Read FCS 2.0/3.0/3.1 files into a Dataset: own HEADER/TEXT parsing, numpy DATA reading, clear errors.

Every size the file declares is checked against the file's real size before anything is allocated,
and a file whose event layout ($PAR × $TOT × bytes per event against its DATA offsets) does not add up
is refused; only an off-by-one end offset or padding shorter than one event is read, with a warning.
Values are preprocessed as flowio/FlowKit do: log channels linearised, linear channels divided by $PnG,
Time multiplied by $TIMESTEP. One difference: a gain on a log-amplified channel is ignored (with a warning), as
FCS 3.1 and flowCore have it, where flowio and FlowKit divide by it too (see _apply_gain_and_timestep).

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

from ..base.dataset import UNASSIGNED, Channel, Dataset, Spillover, make_channels, make_unique
from ..base.errors import CytoInputError, quoted

HEADER_BYTES = 58
SCAN_ROWS = 1 << 16
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
    text_span: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


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
            budget = [size]  # all data sets together cannot hold more event bytes than the file
            parts = [_read_part(fh, ds, size, name, budget) for ds in data_sets]
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    if len(parts) == 1:
        p = parts[0]
        return Dataset(
            events=p.events, channels=p.channels, samples=[name], sample_ids=np.zeros(p.events.shape[0], np.int32),
            annotations=p.annotations, spillover=p.spillover, metadata=p.text, warnings=p.warnings, name=name,
        )
    return _combine_data_sets(parts, name)


def read_fcs_layout(path: Path, display_name: str | None = None) -> tuple[list[str], list[str]]:
    """The channel names and annotation columns read_fcs gives for the file, from its HEADER and TEXT only (no
    events): how a study is matched across files before any is read whole."""
    path = Path(path)
    name = display_name or path.name
    try:
        with open(path, "rb") as fh:
            data_sets = _read_data_sets(fh, path.stat().st_size, name)
    except OSError as exc:
        raise CytoInputError(f"'{name}' could not be opened ({exc.strerror or exc}).") from exc
    layouts = [_layout(ds.text, name) for ds in data_sets]
    first = set(layouts[0][0])
    loaded = [layout for layout in layouts if first & set(layout[0])]
    common = set.intersection(*(set(names) for names, _ in loaded))
    columns = list(dict.fromkeys(c for _, cols in loaded for c in cols))
    return [n for n in layouts[0][0] if n in common], columns


def _layout(t: dict[str, str], name: str) -> tuple[list[str], list[str]]:
    """One data set's channel names and annotation columns as _read_part turns its TEXT into them."""
    n_par = _int(t.get("$PAR", ""))
    if n_par is None or n_par <= 0 or n_par > len(t):
        raise CytoInputError(f"'{name}' declares no usable channel count ($PAR).")
    channels = make_channels([t.get(f"$P{i}N", "") for i in range(1, n_par + 1)],
                             [t.get(f"$P{i}S") for i in range(1, n_par + 1)])
    names = [c.name for c in channels]
    if POPULATIONS_KEYWORD in t and POPULATION_CHANNEL in names:
        return [n for n in names if n != POPULATION_CHANNEL], ["population"]
    return names, []


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
    if not HEADER_BYTES <= text_start < text_stop or base + text_stop >= size:
        raise CytoInputError(f"'{name}' is damaged: its HEADER points to a TEXT segment outside the file.")
    fh.seek(base + text_start)
    raw = fh.read(text_stop - text_start + 1)
    warnings: list[str] = []
    text = _parse_text(raw, fh.read(1), name, warnings)
    return _DataSet(base, version, text, (data_start, data_stop), (text_start, text_stop), warnings)


def _parse_text(raw: bytes, next_byte: bytes, name: str, warnings: list[str]) -> dict[str, str]:
    """Split a TEXT segment into upper-case keywords and values; a doubled delimiter is a literal one.

    A TEXT that does not end with its delimiter, or whose keywords and values do not pair up, is
    damaged (a wrong HEADER offset or a broken delimiter): what follows the damage may be misread.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.rstrip("\x00 \r\n")
    if len(text) < 2:
        raise CytoInputError(f"'{name}' has an empty TEXT segment, so its channels are unknown.")
    delim = text[0]
    if text[-1] != delim and next_byte.decode("latin-1") == delim:
        text += delim  # the HEADER's TEXT end stops one byte before the closing delimiter
    tokens, tail = _split_tokens(text[1:], delim)
    closed = tail == ""
    if not closed and tail.endswith(delim) and len(tokens) % 2:
        tokens += [tail[:-1], ""]  # '…/KEY//' at the very end: the last keyword has an empty value
        closed = True
    elif not closed:
        tokens.append(tail)
    if not closed:
        cut = 1 if len(tokens) % 2 else 2  # a cut keyword alone, or a keyword with its cut value
        warnings.append(f"'{name}' has a TEXT segment that does not end with its delimiter, so its last keyword "
                        f"({quoted(tokens[-cut])}) may be cut short and was ignored.")
        tokens = tokens[:-cut]
    elif len(tokens) % 2:
        warnings.append(f"'{name}' has a TEXT segment whose keywords and values do not pair up (a damaged delimiter "
                        f"or an empty value), so some keywords may be misread.")
    pairs = {k.strip().upper(): v for k, v in zip(tokens[::2], tokens[1::2]) if k.strip()}
    if "$PAR" not in pairs:
        raise CytoInputError(f"'{name}' is damaged: its TEXT segment has no $PAR keyword.")
    return pairs


def _split_tokens(body: str, delim: str) -> tuple[list[str], str]:
    """Tokens ended by a single delimiter (a doubled one is a literal delimiter), and the text after the last one."""
    tokens: list[str] = []
    current: list[str] = []
    for k, part in enumerate(re.split(f"({re.escape(delim)}+)", body)):
        if k % 2 == 0:
            current.append(part)
            continue
        current.append(delim * (len(part) // 2))
        if len(part) % 2:
            tokens.append("".join(current))
            current = []
    return tokens, "".join(current)


def _read_part(fh: BinaryIO, ds: _DataSet, size: int, name: str, budget: list[int]) -> _Part:
    """Read one data set's events and turn its TEXT into channels, spillover and population annotations."""
    t = ds.text
    n_par = _int(t["$PAR"])
    if n_par is None or n_par <= 0:
        raise CytoInputError(f"'{name}' declares no channels ($PAR is {quoted(t['$PAR'])}).")
    if n_par > len(t):
        raise CytoInputError(f"'{name}' is damaged: it declares {n_par:,} channels ($PAR) but its TEXT segment "
                             f"has only {len(t):,} keywords to describe them.")
    mode = t.get("$MODE", "L").strip().upper()
    if mode != "L":
        raise CytoInputError(f"'{name}' stores histograms ($MODE {quoted(mode)}), not a list of events.")
    dtype_code = t.get("$DATATYPE", "").strip().upper()
    order = _byte_order(t.get("$BYTEORD", "1,2,3,4"), name)
    widths = _field_widths(t, dtype_code, n_par, name)
    row = sum(widths)
    warnings = list(ds.warnings)
    start, n_events = _locate_data(ds, row, size, name, warnings)
    budget[0] -= n_events * row
    if budget[0] < 0:
        raise CytoInputError(f"'{name}' is damaged: its data sets ($NEXTDATA) claim more event bytes than the file holds.")
    fh.seek(ds.base + start)
    if dtype_code == "I":
        events = _read_ints(fh, n_events, widths, t, order, name, warnings)
    else:
        events = np.fromfile(fh, np.dtype(f"{order}f{widths[0]}"), n_events * n_par).reshape(n_events, n_par)
        events = events.astype(np.float32) if dtype_code == "D" else _to_native(events)
    names = [t.get(f"$P{i}N", "") for i in range(1, n_par + 1)]
    _apply_gain_and_timestep(events, t, names, name, warnings)
    events = _drop_non_finite(events, dtype_code, name, warnings)
    markers = [t.get(f"$P{i}S") for i in range(1, n_par + 1)]
    channels = make_channels(names, markers)
    annotations = pd.DataFrame()
    if POPULATIONS_KEYWORD in t and POPULATION_CHANNEL in [c.name for c in channels]:
        events, channels, annotations = _populations_to_annotation(events, channels, t[POPULATIONS_KEYWORD], name, warnings)
    spill = _find_spillover(t, channels, name, warnings)
    return _Part(events, channels, t, annotations, spill, warnings)


def _field_widths(t: dict[str, str], dtype_code: str, n_par: int, name: str) -> list[int]:
    """Bytes per value of each parameter, from $DATATYPE and $PnB; anything this reader cannot lay out is refused."""
    if dtype_code in ("F", "D"):
        width = 4 if dtype_code == "F" else 8
        bits = [_int(t.get(f"$P{i}B", "")) for i in range(1, n_par + 1)]
        odd = next((i for i, b in enumerate(bits, start=1) if b is not None and b != 8 * width), None)
        if odd is not None:
            raise CytoInputError(f"'{name}' is damaged: it stores $DATATYPE {dtype_code} events ({8 * width}-bit floats) "
                                 f"but gives channel {odd} {quoted(t[f'$P{odd}B'])} bits ($P{odd}B).")
        return [width] * n_par
    if dtype_code == "I":
        bits = [_int(t.get(f"$P{i}B", "")) or 0 for i in range(1, n_par + 1)]
        if min(bits) <= 0:
            raise CytoInputError(f"'{name}' is damaged: a $PnB bit width is missing or not a positive number.")
        odd = next((b for b in bits if b % 8 or b > 64), None)
        if odd is not None:
            raise CytoInputError(f"'{name}' packs integers into {odd:,} bits, which this app cannot read.")
        return [b // 8 for b in bits]
    raise CytoInputError(f"'{name}' stores events as $DATATYPE {quoted(dtype_code) if dtype_code else 'blank'}; "
                         f"only F, D and I are supported.")


def _locate_data(ds: _DataSet, row: int, size: int, name: str, warnings: list[str]) -> tuple[int, int]:
    """Pick the DATA offsets (TEXT or HEADER) whose segment holds exactly the declared events; return (start, n_events).

    The segment may be one byte longer or shorter than the events (a common export bug) or end in
    padding shorter than one event; any other mismatch means $PAR, $TOT or the offsets are wrong.
    """
    t = ds.text
    text_off = (_int(t.get("$BEGINDATA", "")), _int(t.get("$ENDDATA", "")))
    cands = {"HEADER": ds.header_data, "TEXT": text_off if None not in text_off else None}
    order = ["HEADER", "TEXT"] if ds.version == "2.0" else ["TEXT", "HEADER"]
    given = {k: cands[k] for k in order if cands[k] is not None and cands[k][0] >= HEADER_BYTES}  # type: ignore[index]
    cands = {k: span for k, span in given.items() if _outside_header_and_text(span, ds)}
    if not cands:
        raise CytoInputError(f"'{name}' is damaged: its HEADER and TEXT give no valid location for its events.")
    declared = _int(t.get("$TOT", ""))
    room = {k: max(size - ds.base - s, 0) // row for k, (s, _) in cands.items()}
    first = next(iter(cands))
    if declared is None:
        declared = min((cands[first][1] - cands[first][0] + 1) // row, room[first])
    if declared <= 0:
        raise CytoInputError(f"'{name}' contains no events.")
    need = declared * row
    extra = {k: e - s + 1 - need for k, (s, e) in cands.items()}
    fitting = [k for k in cands if room[k] >= declared and -1 <= extra[k] < max(row, 2)]
    if not fitting:
        if room[first] < declared and ds.base + cands[first][1] >= size:
            raise CytoInputError(f"'{name}' is truncated: it holds {room[first]:,} of {declared:,} events.")
        seg = cands[first][1] - cands[first][0] + 1
        raise CytoInputError(
            f"'{name}' is damaged: its data segment holds {seg:,} bytes, but {declared:,} events "
            f"of {row:,} bytes each ($TOT × $PAR channels) need {need:,}."
        )
    chosen = min(fitting, key=lambda k: (extra[k] != 0, abs(extra[k])))
    if any(span != cands[chosen] for span in given.values()):
        warnings.append(
            f"'{name}' gives different data offsets in its HEADER and TEXT; the {chosen} ones match "
            f"the {declared:,} events and were used."
        )
    ex = extra[chosen]
    if ex == 1:
        warnings.append(f"'{name}' marks the end of its events one byte too late (a common export bug); this was ignored.")
    elif ex == -1:
        warnings.append(f"'{name}' marks the end of its events one byte too early (a common export bug); this was ignored.")
    elif ex > 1:
        n_par = _int(t["$PAR"]) or 0
        if f"$P{n_par + 1}B" in t:
            raise CytoInputError(f"'{name}' is damaged: it declares {n_par:,} channels ($PAR) but describes a channel "
                                 f"{n_par + 1} too, and its data segment is {ex:,} bytes longer than its events.")
        warnings.append(f"'{name}' has {ex:,} bytes of padding after its {declared:,} events; they were ignored.")
    return cands[chosen][0], declared


def _outside_header_and_text(span: tuple[int, int], ds: _DataSet) -> bool:
    """Whether a DATA segment [start, stop] is a real range that does not overlap the TEXT segment."""
    start, stop = span
    text_start, text_stop = ds.text_span
    return stop >= start and (start > text_stop or stop < text_start)


def _read_ints(fh: BinaryIO, n: int, widths: list[int], t: dict[str, str], order: str,
               name: str, warnings: list[str]) -> np.ndarray:
    """Integer events of any whole-byte widths, masked by $PnR and with log-amplified channels linearised."""
    n_par = len(widths)
    masks = [_mask(t, i, widths[i - 1], name) for i in range(1, n_par + 1)]
    scales = [_log_scale(t, i, name) for i in range(1, n_par + 1)]
    over: list[int] = []
    if len(set(widths)) == 1 and widths[0] in (1, 2, 4, 8):
        raw = np.fromfile(fh, np.dtype(f"{order}u{widths[0]}"), n * n_par).reshape(n, n_par)
        raw = _to_native(raw)
        full = np.iinfo(raw.dtype).max
        for j, m in enumerate(masks):
            if m != full:
                col = raw[:, j]
                if (col > m).any():
                    over.append(j)
                    col &= raw.dtype.type(m)
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
            if (val > np.uint64(masks[j])).any():
                over.append(j)
                val &= np.uint64(masks[j])
            out[:, j] = val
            pos += w
    over = [j for j in over if t.get(f"$P{j + 1}N", "").lower() != "time"]  # Time counters often run past $PnR
    if over:
        shown = ", ".join(quoted(t.get(f"$P{j + 1}N", "") or f"channel {j + 1}") for j in over[:3])
        warnings.append(f"'{name}' has values above the $PnR range in {len(over)} channel(s) ({shown}); their "
                        f"extra bits were dropped, as the FCS standard says, but check that the file is not damaged.")
    with np.errstate(over="ignore", invalid="ignore"):
        for j, scale in enumerate(scales):
            if scale is not None:
                factor, log0 = scale
                col = out[:, j]
                np.multiply(col, factor, out=col)
                np.power(np.float32(10.0), col, out=col)
                col *= log0
    return out


def _mask(t: dict[str, str], i: int, width: int, name: str) -> int:
    """The bit mask $PnR implies (next power of two minus one), capped at the field width."""
    full = (1 << (8 * width)) - 1
    r = _num(t.get(f"$P{i}R", ""))
    if r is not None and not np.isfinite(r):
        raise CytoInputError(f"'{name}' is damaged: channel {i} has the range {quoted(t[f'$P{i}R'])} ($P{i}R), "
                             f"which is not a finite number.")
    if r is None or r <= 1:
        return full
    return min(full, (1 << int(np.ceil(np.log2(min(r, 2.0 ** 64))))) - 1)


def _log_scale(t: dict[str, str], i: int, name: str) -> tuple[float, float] | None:
    """For a log-amplified integer channel, (decades / $PnR, log(0) value) from $PnE; None when linear.

    '0,0' (or no $PnE) is linear and a 0 offset means 1 by the standard; anything unreadable is refused
    rather than silently read as linear."""
    value = t.get(f"$P{i}E", "").strip()
    if not value:
        return None
    try:
        decades, log0 = (float(x) for x in value.split(","))
    except ValueError:
        raise CytoInputError(f"'{name}' has an unreadable amplification {quoted(value)} for channel {i} "
                             f"($P{i}E should be two numbers such as 4,1).") from None
    if not (np.isfinite(decades) and np.isfinite(log0)):
        raise CytoInputError(f"'{name}' is damaged: channel {i} has the amplification {quoted(value)} ($P{i}E), "
                             f"which is not finite.")
    if decades <= 0:
        return None
    rng = _num(t.get(f"$P{i}R", ""))
    if rng is None or rng <= 0:
        raise CytoInputError(f"'{name}' is damaged: log channel {i} has no positive range ($P{i}R), "
                             f"so its values cannot be linearised.")
    return decades / rng, (log0 or 1.0)


def _apply_gain_and_timestep(events: np.ndarray, t: dict[str, str], names: list[str], name: str,
                             warnings: list[str]) -> None:
    """Divide linearly amplified channels by $PnG and multiply Time by $TIMESTEP, in place.

    FCS 3.1 (§3.3, keywords $PnE and $PnG) scales a channel by its gain only where it was amplified linearly ($PnE
    0,0): a log-amplified channel's value already is its position on the instrument's log scale (linearised above
    for integer data), and its $PnG says nothing about that scale. So a log channel's gain is ignored whatever the
    data type, as flowCore's 'linearize-with-PnG-scaling' does (this reader used to divide float channels: a Guava
    file's log-flagged 'RED-HLog' 2.41 read as 0.0205). flowio 1.4 and FlowKit 1.3 divide such channels too, so the
    file's warnings say which channels read differently there.
    Time never takes a gain (instruments often repeat $TIMESTEP there)."""
    ignored: list[str] = []
    on_log: list[str] = []
    for j, channel in enumerate(names):
        i = j + 1
        if channel.lower() == "time":
            _scale_time(events, j, t.get("$TIMESTEP"), name, warnings)
            continue
        value = t.get(f"$P{i}G", "").strip()
        if not value:
            continue
        gain = _num(value)
        shown = f"{quoted(channel or f'channel {i}')} ({quoted(value)})"
        if gain is None or not np.isfinite(gain) or gain < 0:
            ignored.append(shown)
        elif gain not in (0.0, 1.0) and _decades(t, i) > 0:
            on_log.append(shown)
        elif gain not in (0.0, 1.0):
            events[:, j] = events[:, j] / np.float64(gain)
    if ignored:
        warnings.append(f"'{name}' gives gains ($PnG) that are not usable numbers for {', '.join(ignored[:3])}; "
                        f"those channels were left as stored.")
    if on_log:
        warnings.append(f"'{name}' gives gains ($PnG) for log-amplified channels {', '.join(on_log[:3])}"
                        f"{' …' if len(on_log) > 3 else ''}; FCS 3.1 applies a gain to linear channels only, so their "
                        f"values were not divided by it (FlowKit and flowio divide them).")


def _decades(t: dict[str, str], i: int) -> float:
    """The log decades $PnE gives channel i: 0 for linear amplification or a $PnE that does not start with a number."""
    try:
        decades = float(t.get(f"$P{i}E", "").split(",")[0])
    except ValueError:
        return 0.0
    return decades if np.isfinite(decades) and decades > 0 else 0.0


def _scale_time(events: np.ndarray, j: int, value: str | None, name: str, warnings: list[str]) -> None:
    """Time × $TIMESTEP (seconds); a blank $TIMESTEP means 1, an unusable one leaves Time in the instrument's ticks."""
    if value is None or not value.strip():
        return
    step = _num(value)
    if step is None or not np.isfinite(step) or step <= 0:
        warnings.append(f"'{name}' gives a time step ($TIMESTEP {quoted(value)}) that is not a positive number, "
                        f"so Time was left in the instrument's ticks.")
        return
    if step != 1.0:
        events[:, j] = events[:, j] * np.float64(step)


def _drop_non_finite(events: np.ndarray, dtype_code: str, name: str, warnings: list[str]) -> np.ndarray:
    """Drop events with NaN or infinite values (warning how many), scanning in blocks so no full-size mask is made.

    Float files are also checked for subnormal values, which measured data never holds but integers
    read as floats (a wrong $DATATYPE) do."""
    n = events.shape[0]
    bad: list[np.ndarray] = []
    tiny = 0
    with np.errstate(invalid="ignore"):
        for s in range(0, n, SCAN_ROWS):
            block = events[s:s + SCAN_ROWS]
            rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
            if rows.size:
                bad.append(rows + s)
            if dtype_code == "F":
                a = np.abs(block)
                tiny += int(np.count_nonzero((a < np.finfo(np.float32).tiny) & (a > 0)))
    if tiny > max(10, n * events.shape[1] // 1000):
        warnings.append(f"'{name}' holds {tiny:,} values too small for measured data, as if its events were integers "
                        f"read as floats; check that its $DATATYPE is right.")
    if not bad:
        return events
    drop = np.concatenate(bad)
    if drop.size == n:
        raise CytoInputError(f"'{name}' has no event without missing or infinite values.")
    warnings.append(f"'{name}' has {drop.size:,} events with missing or infinite values; they were dropped.")
    keep = np.ones(n, bool)
    keep[drop] = False
    return events[keep]


def _to_native(a: np.ndarray) -> np.ndarray:
    """Swap bytes in place when the file's byte order differs from the machine's (no second buffer)."""
    return a if a.dtype.isnative else a.byteswap(inplace=True).view(a.dtype.newbyteorder())


def _byte_order(value: str, name: str) -> str:
    """'<' for 1,2,3,4-style $BYTEORD, '>' for 4,3,2,1-style; anything else cannot be read safely."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if parts == sorted(parts):
        return "<"
    if parts == sorted(parts, reverse=True):
        return ">"
    raise CytoInputError(f"'{name}' uses the byte order {quoted(value)}, which this app cannot read.")


def _populations_to_annotation(
    events: np.ndarray, channels: list[Channel], mapping: str, name: str, warnings: list[str]
) -> tuple[np.ndarray, list[Channel], pd.DataFrame]:
    """Turn our own population_id channel plus CYTOAUTO_POPULATIONS into a 'population' annotation."""
    try:
        id_to_name = {int(k): str(v) for k, v in json.loads(mapping).items()}
    except (ValueError, TypeError, AttributeError, RecursionError):
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
    if n is None or n < 0 or len(tokens) not in (1 + n + n * n, 1 + n * n):
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
    matrix = np.asarray(values, dtype=np.float64).reshape(n, n)
    if not np.isfinite(matrix).all() or np.linalg.matrix_rank(matrix) < n:
        warnings.append(f"'{name}' has a {key} matrix with missing, infinite or degenerate entries, so it was not "
                        f"loaded and the events cannot be compensated with it.")
        return None
    return Spillover(channels=list(targets), matrix=matrix)  # type: ignore[arg-type]


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
            shown = ", ".join(quoted(c.name) for c in p.channels[:4])
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
        shown = ", ".join(map(quoted, dropped[:8])) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
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
