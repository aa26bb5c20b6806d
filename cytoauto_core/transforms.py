"""Compensation, arcsinh and scaling: raw events to model-ready float32 features."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .dataset import Dataset, Spillover
from .errors import CytoInputError

COFACTOR_MASS = 5.0
COFACTOR_FLOW = 150.0
COFACTOR_SPECTRAL = 6000.0
BLOCK_ROWS = 16_384


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


def default_spec(dataset: Dataset) -> TransformSpec:
    """Sensible defaults: default features, cofactor 5 for mass cytometry and 150 for flow, compensation when available."""
    kinds = {c.name: c.kind for c in dataset.channels}
    features = dataset.feature_names
    flow = any(k == "scatter" for k in kinds.values()) or dataset.spillover is not None
    return TransformSpec(
        features=features,
        cofactor=COFACTOR_FLOW if flow else COFACTOR_MASS,
        linear=[n for n in features if kinds[n] in ("scatter", "time")],
        compensate=dataset.spillover is not None,
    )


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
