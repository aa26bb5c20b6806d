"""The in-memory dataset: float32 events, a channel table, samples, annotations and a content hash."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .chunks import iter_rows

CHANNEL_KINDS = ("marker", "scatter", "time", "other")
HASH_CHUNK_ROWS = 65_536
UNASSIGNED = "unassigned"  # a cell no population is confident enough for (population id -1)
UNKNOWN = "unknown"  # a cell unlike every named population, by its novelty score (population id -2)
UNASSIGNED_ID, UNKNOWN_ID = -1, -2  # their population ids in predictions and exports
NOT_CALLED = {UNASSIGNED_ID: UNASSIGNED, UNKNOWN_ID: UNKNOWN}  # ids of cells given no population → their names
NOT_A_POPULATION = ("", UNASSIGNED, UNKNOWN, "nan")  # lower-cased annotation values that name no population

_TIME = re.compile(r"^(time|hdr[-_ ]?t)$", re.I)
_SCATTER = re.compile(r"^(fsc|ssc|fs|ss)([-_ ]?(a|h|w|area|height|width|lin|log))*(\s.*)?$", re.I)
_NOT_FEATURE = re.compile(
    r"(^|[^a-z])("
    r"event[-_ ]?(number|length|#)?|cell[-_ ]?length|event_?length|"
    r"dna[-_ ]?\d*|ir19[13]\w*|"
    r"viability|live[-_ /]?dead|cisplatin|pt19[4-8]\w*|rh103\w*|"
    r"barcode\w*|bc\d+|pd10[2-8]\w*|beads?|ce140\w*|bead\w*|"
    r"file[-_ ]?(number|id)|sample[-_ ]?(id|number)|individual\w*|"
    r"center|offset|width|residual|gaussian\w*|"
    r"population[-_ ]?id|cluster[-_ ]?id|label|ground[-_ ]?truth|"
    r"map[-_ ]?[xy]|confidence"
    r")([^a-z]|$)",
    re.I,
)


@dataclass
class Channel:
    """One measured channel: `name` is the detector ($PnN, unique), `marker` the antigen ($PnS or name)."""

    name: str
    marker: str
    kind: str = "marker"
    is_feature: bool = True

    @property
    def label(self) -> str:
        """What the UI shows: 'CD3 (Er170Di)' when a marker differs from the detector name."""
        return self.name if self.marker == self.name else f"{self.marker} ({self.name})"


@dataclass
class Spillover:
    """A spillover matrix over the named channels (rows: source, columns: detector)."""

    channels: list[str]
    matrix: np.ndarray


@dataclass
class Dataset:
    """Events of one or several samples with the metadata the app needs.

    `events` is float32 (n_cells × n_channels) on the instrument's scale (uncompensated,
    untransformed); `sample_ids[i]` indexes `samples` for cell i; `annotations` holds the
    non-numeric columns (e.g. ground truth), one row per cell.
    """

    events: np.ndarray
    channels: list[Channel]
    samples: list[str]
    sample_ids: np.ndarray
    annotations: pd.DataFrame = field(default_factory=pd.DataFrame)
    spillover: Spillover | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    name: str = "dataset"

    def __post_init__(self) -> None:
        if self.events.dtype != np.float32:
            raise TypeError("events must be float32")
        if self.events.ndim != 2 or self.events.shape[1] != len(self.channels):
            raise ValueError("events must be n_cells × n_channels")
        if len(self.sample_ids) != self.n_cells:
            raise ValueError("one sample id per cell is required")

    @property
    def n_cells(self) -> int:
        return int(self.events.shape[0])

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.channels if c.is_feature]

    def channel_index(self, names: list[str]) -> list[int]:
        """Column positions of `names` in `events`; KeyError names the first missing one."""
        lookup = {c.name: i for i, c in enumerate(self.channels)}
        return [lookup[n] for n in names]

    def feature_markers(self, features: list[str]) -> list[str]:
        """The marker ($PnS, else the channel name) of each of `features` (channel names), in their order."""
        return [self.channels[i].marker for i in self.channel_index(features)]

    def content_hash(self) -> str:
        """A hash of the events, channel names and annotations: the workspace key."""
        h = hashlib.blake2b(digest_size=16)
        for _, rows in iter_rows(self.events, HASH_CHUNK_ROWS):  # row chunks: no full copy, no resident mapping
            h.update(np.ascontiguousarray(rows).data)
        h.update("\x1f".join(self.channel_names).encode())
        for _, ids in iter_rows(self.sample_ids, HASH_CHUNK_ROWS):
            h.update(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
        for col in self.annotations.columns:
            h.update(str(col).encode())
            values = self.annotations[col]
            for start in range(0, len(values), HASH_CHUNK_ROWS):  # element-wise hashes: chunks give the same bytes
                h.update(pd.util.hash_pandas_object(values.iloc[start:start + HASH_CHUNK_ROWS], index=False)
                         .to_numpy().tobytes())
        return h.hexdigest()


def classify_channel(name: str, marker: str) -> tuple[str, bool]:
    """Guess a channel's kind and whether it is a default feature from its detector and marker names."""
    for text in (name, marker):
        if _TIME.match(text.strip()):
            return "time", False
    if _SCATTER.match(name.strip()):
        return "scatter", False
    if _NOT_FEATURE.search(name) or _NOT_FEATURE.search(marker):
        return "other", False
    return "marker", True


def make_channels(names: list[str], markers: list[str | None]) -> list[Channel]:
    """Build the channel table: unique detector names, markers falling back to names when missing or duplicated."""
    unique_names = make_unique([n.strip() or f"Channel{i + 1}" for i, n in enumerate(names)])
    raw_markers = [(m or "").strip() for m in markers]
    counts: dict[str, int] = {}
    for m in raw_markers:
        if m:
            counts[m] = counts.get(m, 0) + 1
    channels = []
    for n, m in zip(unique_names, raw_markers):
        marker = m if m and counts[m] == 1 else n
        kind, feature = classify_channel(n, marker)
        channels.append(Channel(name=n, marker=marker, kind=kind, is_feature=feature))
    return channels


def make_unique(names: list[str]) -> list[str]:
    """Append _2, _3, … to repeated names so every name is unique, keeping the first as is."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for n in names:
        if n not in seen:
            seen[n] = 1
            out.append(n)
            continue
        k = seen[n]
        while True:
            k += 1
            candidate = f"{n}_{k}"
            if candidate not in taken:
                break
        seen[n] = k
        taken.add(candidate)
        out.append(candidate)
    return out


def event_ids(sample_ids: np.ndarray) -> np.ndarray:
    """Each cell's row in its own sample's file (0-based): the id that joins an export back to the original."""
    ids = np.asarray(sample_ids)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if len(ids) else np.empty(0, np.int64)
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
    out = np.empty(len(ids), np.int64)
    out[order] = np.arange(len(ids)) - run_start
    return out
