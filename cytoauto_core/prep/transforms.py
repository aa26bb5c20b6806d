"""Compensation, arcsinh and scaling: raw events to model-ready float32 features."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..base.chunks import gather_rows
from ..base.dataset import Channel, Dataset, Spillover
from ..base.errors import CytoInputError

COFACTOR_MASS = 5.0
COFACTOR_FLOW = 150.0
COFACTOR_SPECTRAL = 6000.0
BLOCK_ROWS = 16_384
TRANSFORMED_MAX = 20.0  # arcsinh(10^6 / 5) is 12.9 and logicle/log10 scales end near 4.5–7; raw counts go far above
SCALE_SAMPLE = 50_000
NEGATIVE_SHARE = 0.02  # a channel needs this share of cells below zero to measure its negative population's spread
SPREAD_FACTOR = 3.0  # suggested cofactor: this many robust SDs of the negative population (OMIQ-style autoscale)
MOSTLY_NEGATIVE = 0.5  # an unnamed detector's note names its share of cells below zero from this share on
FLAT_SHARE = 0.999  # a channel where this share of cells has one value carries no signal


@dataclass
class TransformSpec:
    """How raw events become features; JSON-serialisable so bundles and exports can record it.

    `features` are channel names in column order. Arcsinh(x / cofactor) applies to every feature
    except those in `linear` (scatter and time are never transformed); `cofactors` overrides the
    default per channel. `compensate` applies the file's spillover matrix first.
    """

    features: list[str]
    cofactor: float = COFACTOR_MASS
    cofactors: dict[str, float] = field(default_factory=dict)
    linear: list[str] = field(default_factory=list)
    compensate: bool = True
    arcsinh: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformSpec":
        return cls(**d)


@dataclass
class ScaleGuess:
    """Whether a dataset's marker values already lie on a transformed scale, and one sentence saying why."""

    transformed: bool
    reason: str


@dataclass
class CofactorSuggestion:
    """A suggested arcsinh cofactor for one channel, from the spread of its negative population."""

    channel: str
    cofactor: float
    negative_spread: float
    negative_share: float


@dataclass
class UntickedChannel:
    """A channel the reader took for a marker that is left out of the default features, and why (for the Data page)."""

    channel: str
    reason: str


def default_spec(dataset: Dataset) -> TransformSpec:
    """Sensible defaults: default features but the unticked channels (see unticked_channels); no transform for data
    already on an arcsinh/logicle/log scale (see detect_scale), else arcsinh with cofactor 5 for mass cytometry and 150
    for flow, compensation when available."""
    kinds = {c.name: c.kind for c in dataset.channels}
    unticked = {u.channel for u in unticked_channels(dataset)}
    features = [n for n in dataset.feature_names if n not in unticked]
    flow = any(k == "scatter" for k in kinds.values()) or dataset.spillover is not None
    raw = not detect_scale(dataset).transformed
    return TransformSpec(
        features=features,
        cofactor=COFACTOR_FLOW if flow else COFACTOR_MASS,
        linear=[n for n in features if kinds[n] in ("scatter", "time")],
        compensate=raw and dataset.spillover is not None,
        arcsinh=raw,
    )


def unticked_channels(dataset: Dataset) -> list[UntickedChannel]:
    """Default features that are left unticked: detectors without a marker name in a file that names its markers
    (empty detectors, like three of the COVID panel's, 67–99 % of cells below zero) and channels without signal (one
    value in 99.9 % of cells). A file that names no marker keeps every channel with signal (mass cytometry exports and
    CSV files often name channels by their marker); all channels are kept when none would be left."""
    names_markers = any(c.kind == "marker" and _named(c) for c in dataset.channels)
    columns = [i for i, c in enumerate(dataset.channels) if c.is_feature]
    values = _sampled_rows(dataset)[:, columns]
    found = [UntickedChannel(dataset.channels[i].name, reason) for j, i in enumerate(columns)
             if (reason := _why_unticked(dataset.channels[i], values[:, j], names_markers))]
    return found if len(found) < len(columns) else []


def _why_unticked(channel: Channel, values: np.ndarray, names_markers: bool) -> str:
    """Why a default feature is better left out, from its (sampled) values: '' when it is not."""
    if not values.size:
        return ""
    reasons = ["no marker name"] if names_markers and not _named(channel) else []
    below = float(np.mean(values < 0))
    if reasons and below >= MOSTLY_NEGATIVE:
        reasons.append(f"{100 * below:.0f} % of cells below zero")
    same = np.unique(values, return_counts=True)[1].max() / values.size
    if same >= FLAT_SHARE:
        reasons.append(f"{100 * same:.1f} % of cells have the same value")
    return ", ".join(reasons)


def _named(channel: Channel) -> bool:
    """Whether the file names the channel's marker ($PnS other than the detector name and not just a dash)."""
    return channel.marker != channel.name and bool(channel.marker.strip("-–—_. "))


def _sampled_rows(dataset: Dataset) -> np.ndarray:
    """Evenly spaced rows (at most about SCALE_SAMPLE) of the events, non-finite values as zero."""
    step = max(1, dataset.n_cells // SCALE_SAMPLE)
    values = gather_rows(dataset.events, np.arange(0, dataset.n_cells, step)).astype(np.float32, copy=False)
    return np.where(np.isfinite(values), values, 0.0)


def detect_scale(dataset: Dataset) -> ScaleGuess:
    """Guess from the marker channels' value range (and the writer's keywords) whether the data is already transformed.

    Raw mass and flow intensities reach hundreds to hundreds of thousands; arcsinh, logicle and log10 values stay
    below about 13, so a 99.9th percentile under TRANSFORMED_MAX in every marker channel means "already transformed".
    """
    columns = [i for i, c in enumerate(dataset.channels) if c.kind == "marker" and c.is_feature]
    columns = columns or [i for i, c in enumerate(dataset.channels) if c.kind == "marker"]
    if not columns or dataset.n_cells == 0:
        return ScaleGuess(False, "")
    values = _sampled_rows(dataset)[:, columns]
    lo, hi = np.quantile(values, [0.001, 0.999], axis=0)
    top, bottom = float(np.abs(np.concatenate([lo, hi])).max()), float(lo.min())
    if top >= TRANSFORMED_MAX:
        return ScaleGuess(False, f"Marker values reach {float(hi.max()):,.0f}, as raw intensities do, "
                                 "so arcsinh is applied by default.")
    evidence = _writer_evidence(dataset.metadata, [c + 1 for c in columns])
    spill = "; the file's spillover matrix is not applied either, since compensation needs raw values" \
        if dataset.spillover is not None else ""
    return ScaleGuess(True, f"Marker values lie between {bottom:.1f} and {float(hi.max()):.1f}{evidence}, as on an "
                            f"arcsinh, logicle or log scale (raw intensities reach hundreds or more), so no further "
                            f"transform is applied by default{spill}.")


def _writer_evidence(metadata: dict[str, str], parameters: list[int]) -> str:
    """A clause naming the file's writer and, where flowCore recorded it, the transformed range it wrote."""
    writer = "flowCore" if any(k.startswith("FLOWCORE_") for k in metadata) else metadata.get("CREATOR", "").strip()
    ranges = []
    for p in parameters:
        try:
            ranges.append(float(metadata[f"FLOWCORE_$P{p}RMAX"]))
        except (KeyError, ValueError):
            continue
    clause = f" (the file was written by {writer}" if writer else ""
    if ranges and max(ranges) < TRANSFORMED_MAX:
        clause += (", " if clause else " (") + f"which records a range up to {max(ranges):g}"
    return clause + ")" if clause else ""


def suggest_cofactors(dataset: Dataset, spec: TransformSpec, seed: int = 0) -> list[CofactorSuggestion]:
    """Per-channel arcsinh cofactors, OMIQ-style: SPREAD_FACTOR × the robust SD of the negative population, at least 5.

    The spread is measured on the cells below zero (after compensation when the spec compensates), mirrored about
    zero (SD = 1.4826 × their median distance from zero); channels with too few negative cells get no suggestion.
    """
    channels = [f for f in spec.features if f not in spec.linear]
    if not channels or not spec.arcsinh:
        return []
    rows = np.arange(dataset.n_cells)
    if dataset.n_cells > SCALE_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(dataset.n_cells, SCALE_SAMPLE, replace=False))
    linear = TransformSpec(features=channels, linear=list(channels), compensate=spec.compensate, arcsinh=False)
    values = transform_events(gather_rows(dataset.events, rows), dataset.channel_names, linear, dataset.spillover)
    out = []
    for j, name in enumerate(channels):
        negative = -values[:, j][values[:, j] < 0]
        share = negative.size / max(1, values.shape[0])
        if share < NEGATIVE_SHARE or negative.size < 50:
            continue
        spread = 1.4826 * float(np.median(negative))
        cofactor = max(COFACTOR_MASS, SPREAD_FACTOR * spread)
        out.append(CofactorSuggestion(name, float(f"{cofactor:.2g}"), spread, share))
    return out


def compensate(events: np.ndarray, names: list[str], spill: Spillover) -> np.ndarray:
    """Return a compensated copy of `events`: the spillover channels become events @ inverse(spill)."""
    lookup = {n: i for i, n in enumerate(names)}
    missing = [c for c in spill.channels if c not in lookup]
    if missing:
        raise CytoInputError(f"The spillover matrix names channel {missing[0]!r}, which the data does not have.")
    cols = [lookup[c] for c in spill.channels]
    try:
        inverse = np.linalg.inv(spill.matrix.astype(np.float64)).astype(np.float32)
    except np.linalg.LinAlgError as exc:
        raise CytoInputError("The file's spillover matrix cannot be inverted, so it cannot be compensated.") from exc
    out = events.copy()
    out[:, cols] = events[:, cols] @ inverse
    return out


def transform_features(dataset: Dataset, spec: TransformSpec) -> np.ndarray:
    """Features (n_cells × len(spec.features), float32) after optional compensation and arcsinh."""
    return transform_events(dataset.events, dataset.channel_names, spec, dataset.spillover)


def transform_events(
    events: np.ndarray, names: list[str], spec: TransformSpec, spillover: Spillover | None = None
) -> np.ndarray:
    """Apply `spec` to an events array whose columns are `names`; the core of every transform path."""
    lookup = {n: i for i, n in enumerate(names)}
    missing = [f for f in spec.features if f not in lookup]
    if missing:
        raise CytoInputError(
            f"The data lacks channel {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + ", which the analysis needs."
        )
    source = events
    if spec.compensate and spillover is not None:
        needed = set(spillover.channels) & set(spec.features)
        if needed:
            source = compensate(events, names, spillover)
    cols = np.array([lookup[f] for f in spec.features], dtype=np.intp)
    linear = set(spec.linear) if spec.arcsinh else set(spec.features)
    scaled = np.array([f not in linear for f in spec.features])
    divisors = np.array([spec.cofactors.get(f, spec.cofactor) if f not in linear else 1.0 for f in spec.features],
                        dtype=np.float32)
    out = np.empty((events.shape[0], len(spec.features)), dtype=np.float32)
    for start in range(0, events.shape[0], BLOCK_ROWS):  # row blocks keep every operation contiguous (SIMD)
        block = out[start:start + BLOCK_ROWS]
        np.take(source[start:start + BLOCK_ROWS], cols, axis=1, out=block)
        if scaled.all():
            np.divide(block, divisors, out=block)
            np.arcsinh(block, out=block)
        elif scaled.any():
            block[:, scaled] = np.arcsinh(block[:, scaled] / divisors[scaled])
    return out


@dataclass
class Scaler:
    """Per-feature affine scaling ('minmax' to [0, 1] on 0.5/99.5% quantiles, or 'standard'); JSON-serialisable."""

    method: str = "standard"
    offset: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)

    def fit(self, x: np.ndarray, sample: int = 200_000, seed: int = 0) -> "Scaler":
        rows = x
        if x.shape[0] > sample:
            rows = x[np.random.default_rng(seed).choice(x.shape[0], sample, replace=False)]
        if self.method == "minmax":
            lo, hi = np.quantile(rows, [0.005, 0.995], axis=0)
            self.offset, span = lo.tolist(), hi - lo
        elif self.method == "standard":
            self.offset, span = rows.mean(axis=0).tolist(), rows.std(axis=0)
        else:
            raise ValueError(f"unknown scaling {self.method!r}")
        self.scale = np.where(span > 1e-6, span, 1.0).tolist()
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = (x - np.asarray(self.offset, np.float32)) / np.asarray(self.scale, np.float32)
        return out.astype(np.float32, copy=False)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        return cls(**d)
