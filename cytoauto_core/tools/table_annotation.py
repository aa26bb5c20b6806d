"""Name every cell from a marker table alone: each marker's own negative and positive levels, a likelihood per
population, then one discriminant pass on every marker learnt from the cells the table names most clearly.

Why this method (bench/marker_table.py, every dev-suite set with a table): the table's likelihood alone
(naive Bayes over its markers) is right where the table separates populations well, and one linear discriminant
fitted on its most confident cells adds what the table leaves blank (other markers, correlations); more rounds of
self-training drift on some sets, so there is exactly one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from ..io.marker_table import EXPRESSED, NOT_EXPRESSED, MarkerTable
from .models import Progress, ShouldStop, check_stop
from .models.baselines import LinearModel

LEVEL_CELLS = 50_000
# a level's spread is at least this share of the marker's, added to its own variance, both when the modes are found
# and when the table's clear calls set them again (0.1–0.5 tried on five sets: 0.3 best on average)
LEVEL_SD_FLOOR = 0.3
FIT_CELLS = 200_000  # cells the likelihoods and the discriminant are fitted on (seeded subsample)
# of the cells the table calls a population, the most confident share teaches the discriminant (0.15–0.7 tried on
# five sets: 0.3 best on average)
CONFIDENT_SHARE = 0.3
CONFIDENT_CAP = 2_000  # at most this many cells per population teach it
MIN_CONFIDENT = 20  # ... and at least this many where the table calls that many
RELEVEL_CONFIDENCE = 0.9  # cells the table names at least this clearly set each marker's levels the second time
KEEP_SEPARATION = 0.5  # ... unless that brings the two levels closer than this share of the modes' distance
UNASSIGNED_BELOW = 0.5  # a cell whose best population has a lower probability stays unassigned
CLICK_REPEAT = 100  # a clicked cell counts at most this many times among the teaching cells
CHUNK = 65_536
UNASSIGNED = -1


LEVEL_FIELDS = ("low", "high", "low_sd", "high_sd", "named_low", "named_high")


@dataclass
class MarkerLevels:
    """Each table marker's negative and positive level in the data (the two modes of a 2-component mixture), with
    their spreads; the threshold is where the two modes are equally likely (spread-weighted midpoint)."""

    markers: list[str]  # table markers, in the table's order, that matched a feature
    columns: list[int]  # their feature columns
    low: np.ndarray
    high: np.ndarray
    low_sd: np.ndarray
    high_sd: np.ndarray
    # the medians of the cells the table names clearly on each side (the levels where it has too few): what clicked
    # cells are compared with, since they are the table's own idea of a marker's two sides in this data
    named_low: np.ndarray | None = None
    named_high: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.named_low = self.low.copy() if self.named_low is None else np.asarray(self.named_low, np.float64)
        self.named_high = self.high.copy() if self.named_high is None else np.asarray(self.named_high, np.float64)

    @property
    def threshold(self) -> np.ndarray:
        return (self.low * self.high_sd + self.high * self.low_sd) / (self.low_sd + self.high_sd)

    def to_dict(self) -> dict:
        return {"markers": self.markers, "columns": self.columns,
                **{k: getattr(self, k).round(5).tolist() for k in LEVEL_FIELDS}}


def find_levels(x: np.ndarray, markers: list[str], columns: list[int], seed: int) -> MarkerLevels:
    """The two levels of each marker from a seeded subsample of at most LEVEL_CELLS cells."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), LEVEL_CELLS, replace=False)) if len(x) > LEVEL_CELLS else slice(None)
    found = np.zeros((4, len(columns)))
    for k, j in enumerate(columns):
        values = np.asarray(x[rows, j], np.float64).reshape(-1, 1)
        floor = (LEVEL_SD_FLOOR * values.std()) ** 2 + 1e-6  # a spike of exact zeros (mass cytometry) is no level
        gmm = GaussianMixture(2, random_state=seed, reg_covar=floor).fit(values)
        order = np.argsort(gmm.means_[:, 0])
        means, sds = gmm.means_[order, 0], np.sqrt(gmm.covariances_.reshape(-1)[order])
        found[:, k] = means[0], means[1], max(sds[0], 1e-3), max(sds[1], 1e-3)
    return MarkerLevels(list(markers), list(columns), *found)


class TableDiscriminant(LinearModel):
    """Linear discriminant (no shrinkage: thousands of teaching cells) on standardised markers, saved and applied as
    the other linear models are."""

    kind = "table_lda"

    def estimator(self):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return LinearDiscriminantAnalysis()


def _robust_sd(v: np.ndarray) -> float:
    """Spread from the interquartile range (a normal's sd), so a few misnamed cells do not widen a level."""
    q1, q3 = np.percentile(v, [25, 75])
    return float((q3 - q1) / 1.349)


def _log_normal(v: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return -0.5 * ((v - mean) / sd) ** 2 - np.log(sd)


class TableAnnotator:
    """The table's populations as a classifier of transformed cells (fit/predict_proba, like the other models).

    `columns` are the feature columns of the table's markers (-1 where a marker matched no feature: left out). The
    values given to `fit` may replace the table's: the contradiction check sets a row's contradicted markers blank."""

    def __init__(self, table: MarkerTable, columns: list[int], seed: int = 0) -> None:
        kept = [k for k, c in enumerate(columns) if c >= 0]
        self.table = table
        self.populations = list(table.populations)
        self.markers = [table.markers[k] for k in kept]
        self.columns = [columns[k] for k in kept]
        self.values = table.values[:, kept].astype(np.int8)
        self.seed = seed
        self.levels: MarkerLevels | None = None
        self.discriminant: TableDiscriminant | None = None
        self.outputs = len(self.populations)  # columns of predict_proba: the table's populations, then any extra

    def set_values(self, values: np.ndarray) -> None:
        """Replace the kept markers' table values (the contradiction check blanks what clicks contradict)."""
        self.values = values.astype(np.int8)

    def fit_levels(self, x: np.ndarray) -> "TableAnnotator":
        """Each marker's two levels from the data's own modes, then once more from the cells the table names clearly
        (medians of those its row calls positive and negative): a 2-mode mixture misplaces a rare population's level."""
        self.levels = find_levels(x, self.markers, self.columns, self.seed)
        log_p = self.table_log_proba(x)
        calls = log_p.argmax(axis=1)
        clear = (log_p.max(axis=1) > np.log(RELEVEL_CONFIDENCE)) & self.fits_row(x, calls)
        lv = self.levels
        for k, j in enumerate(self.columns):
            v = np.asarray(x[:, j], np.float64)
            pos = v[clear & (self.values[calls, k] == EXPRESSED)]
            neg = v[clear & (self.values[calls, k] == NOT_EXPRESSED)]
            if pos.size < MIN_CONFIDENT or neg.size < MIN_CONFIDENT:
                continue
            lv.named_low[k], lv.named_high[k] = np.median(neg), np.median(pos)
            if np.median(pos) - np.median(neg) < KEEP_SEPARATION * (lv.high[k] - lv.low[k]):
                continue  # levels that collapse say the table's calls mix the marker's two sides: keep the modes
            floor = LEVEL_SD_FLOOR * v.std()  # as find_levels' mixture adds it: a spike of zeros is no level
            (lv.low[k], lv.high[k]), (lv.low_sd[k], lv.high_sd[k]) = (np.median(neg), np.median(pos)), \
                (max(np.hypot(_robust_sd(neg), floor), 1e-3), max(np.hypot(_robust_sd(pos), floor), 1e-3))
        return self

    def fit_sample(self, x: np.ndarray) -> np.ndarray:
        """The seeded subsample (at most FIT_CELLS cells, in their order) the levels and teaching cells come from;
        `x` itself when it is no larger, so a sample given back is its own fit sample."""
        if len(x) <= FIT_CELLS:
            return np.asarray(x, np.float32)
        rng = np.random.default_rng(self.seed)
        return np.asarray(x[np.sort(rng.choice(len(x), FIT_CELLS, replace=False))], np.float32)

    def teaching(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fit sample, and of it the cells the table names most clearly with their calls (finding the levels
        first, unless set)."""
        sample = self.fit_sample(x)
        if self.levels is None:
            self.fit_levels(sample)
        log_p = self.table_log_proba(sample)
        teach = confident_cells(log_p, self.fits_row(sample, log_p.argmax(axis=1)))
        return sample, sample[teach], log_p[teach].argmax(axis=1)

    def fit(self, x: np.ndarray, progress: Progress | None = None, should_stop: ShouldStop | None = None,
            extra: tuple[np.ndarray, np.ndarray] | None = None, outputs: int | None = None,
            taught: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> "TableAnnotator":
        """Fit the discriminant on the cells the table names most clearly (`taught`: what teaching(x) returned, when
        already computed). `extra` (cells, class indices) joins the teaching cells and wins over the table; indices
        from len(populations) up are populations the table lacks (`outputs` columns in all)."""
        report = progress or (lambda f, m: None)
        if not self.columns:
            raise ValueError("no marker of the table matched a feature")
        report(0.1, "naming cells by the table")
        sample, cells, calls = taught or self.teaching(x)
        if extra is not None and len(extra[0]):
            cells, calls = with_clicks(cells, calls, np.asarray(extra[0], np.float32), np.asarray(extra[1]))
        self.outputs = max(outputs or 0, len(self.populations))
        check_stop(should_stop)
        report(0.8, "learning every marker from the clearest cells")
        if np.unique(calls).size >= 2:
            self.discriminant = TableDiscriminant(self.seed).fit(cells, calls, sample)
        report(1.0, "named")
        return self

    def table_log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log-probability of each population from the table's markers alone (naive Bayes, equal priors): a +1 marker
        scores the positive level, −1 the negative, blank either (half each)."""
        lv = self.levels
        ll = np.zeros((len(x), len(self.populations)))
        for k, j in enumerate(self.columns):
            v = np.asarray(x[:, j], np.float64)
            pos = _log_normal(np.minimum(v, lv.high[k]), lv.high[k], lv.high_sd[k])  # brighter than bright: bright
            neg = _log_normal(np.maximum(v, lv.low[k]), lv.low[k], lv.low_sd[k])  # dimmer than dim: dim
            either = np.logaddexp(pos, neg) + np.log(0.5)
            col = self.values[:, k]
            ll += np.where(col == EXPRESSED, pos[:, None],
                           np.where(col == NOT_EXPRESSED, neg[:, None], either[:, None]))
        return ll - logsumexp(ll, axis=1, keepdims=True)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Population probabilities (n × outputs, float32), in chunks; populations the discriminant never saw get 0."""
        out = np.zeros((len(x), self.outputs), np.float32)
        for start in range(0, len(x), CHUNK):
            part = np.asarray(x[start:start + CHUNK], np.float32)
            if self.discriminant is None:
                out[start:start + len(part), :len(self.populations)] = np.exp(self.table_log_proba(part))
            else:
                out[start:start + len(part), self.discriminant.classes_] = self.discriminant.predict_proba(part)
        return out

    def fits_row(self, x: np.ndarray, calls: np.ndarray) -> np.ndarray:
        """Per cell: on its called row's side of every marker that row names. A cell no row describes (a population
        the table lacks) fails this at its likeliest row, so such cells never teach the levels or the discriminant."""
        above = np.asarray(x[:, self.columns]) > self.levels.threshold
        wanted = self.values[calls]
        return ((wanted == 0) | (above == (wanted == EXPRESSED))).all(axis=1)

    def on_table_side(self, x: np.ndarray, population: int) -> np.ndarray:
        """cells × informative markers of one population: True where the cell is on the side its row says."""
        informative = np.flatnonzero(self.values[population])
        above = np.asarray(x[:, [self.columns[k] for k in informative]]) > self.levels.threshold[informative]
        return above == (self.values[population, informative] == EXPRESSED)


def with_clicks(cells: np.ndarray, calls: np.ndarray, clicked: np.ndarray,
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The teaching cells with the clicks winning: a table-named cell nearer to a clicked cell of another population
    than that population's clicks are to each other takes the click's population, and each population's clicks are
    repeated to weigh as much as the table's cells of it (at most CLICK_REPEAT times)."""
    from sklearn.neighbors import NearestNeighbors

    scale = np.maximum(cells.std(axis=0), 1e-6)
    near = NearestNeighbors(n_neighbors=min(2, len(clicked))).fit(clicked / scale)
    spacing = near.kneighbors(clicked / scale)[0][:, -1]  # each click's distance to its nearest other click
    clicks = np.bincount(labels)
    reach = np.zeros(clicks.size)
    for c in np.flatnonzero(clicks > 1):  # how far apart a population's clicks lie: the reach of its claim
        reach[c] = np.median(spacing[labels == c])
    distance, index = (a[:, 0] for a in near.kneighbors(cells / scale, n_neighbors=1))
    claimed = labels[index]
    calls = np.where(distance < reach[claimed], claimed, calls)
    counts = np.bincount(calls, minlength=reach.size)
    repeat = np.clip(counts[labels] / clicks[labels], 1, CLICK_REPEAT).astype(np.int64)
    return (np.concatenate([cells, np.repeat(clicked, repeat, axis=0)]),
            np.concatenate([calls, np.repeat(labels, repeat)]))


def confident_cells(log_p: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Rows of the cells that teach the discriminant: per called population its most confident CONFIDENT_SHARE
    (at least MIN_CONFIDENT where it has them, at most CONFIDENT_CAP) of the `eligible` cells."""
    calls, confidence = log_p.argmax(axis=1), log_p.max(axis=1)
    keep = [np.empty(0, np.int64)]
    for p in np.unique(calls[eligible]):
        rows = np.flatnonzero((calls == p) & eligible)
        n = min(CONFIDENT_CAP, max(int(CONFIDENT_SHARE * rows.size), min(rows.size, MIN_CONFIDENT)))
        keep.append(rows[np.argsort(-confidence[rows], kind="stable")[:n]])
    return np.sort(np.concatenate(keep))


@dataclass
class TableAnnotation:
    """Every cell named from the table: a population index (UNASSIGNED where no population is likely enough),
    its probability, one sentence per population on the markers that decided it, and notes on what was left out."""

    populations: list[str]
    calls: np.ndarray  # int16 per cell
    confidence: np.ndarray  # float32 per cell
    explanations: dict[str, str]
    notes: list[str] = field(default_factory=list)
    seed: int = 0

    def counts(self) -> dict[str, int]:
        """Cells per population in the table's order, then 'unassigned'."""
        n = np.bincount(self.calls[self.calls >= 0], minlength=len(self.populations))
        return {**dict(zip(self.populations, n.tolist())), "unassigned": int(np.sum(self.calls < 0))}


def calls_from(probs: np.ndarray, below: float = UNASSIGNED_BELOW) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's population index (UNASSIGNED under `below`) and its probability."""
    confidence = probs.max(axis=1).astype(np.float32)
    calls = probs.argmax(axis=1).astype(np.int16)
    calls[confidence < below] = UNASSIGNED
    return calls, confidence


def explain(annotator: TableAnnotator, x: np.ndarray, calls: np.ndarray, seed: int,
            cells: int = 20_000) -> dict[str, str]:
    """Per population one sentence: its cell count and, for each informative marker of its row, the share of its
    cells on the table's side (from a seeded subsample of each population's cells)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p, name in enumerate(annotator.populations):
        members = np.flatnonzero(calls == p)
        if members.size == 0:
            out[name] = f"{name}: no cell matches its row well enough."
            continue
        rows = np.sort(rng.choice(members, cells, replace=False)) if members.size > cells else members
        shares = annotator.on_table_side(x[rows], p).mean(axis=0)
        informative = np.flatnonzero(annotator.values[p])
        parts = [f"{annotator.markers[k]}{'+' if annotator.values[p, k] == EXPRESSED else '−'} {100 * s:.0f} %"
                 for k, s in zip(informative, shares)]
        out[name] = f"{name} ({members.size:,} cells): " + ", ".join(parts) + " of its cells on the table's side."
    return out


def feature_columns(table: MarkerTable, pairs: list[tuple[str, str]], features: list[str]) -> list[int]:
    """Each table marker's column among `features` from match_markers' (marker, channel) pairs; -1 where none."""
    channel_of = dict(pairs)
    return [features.index(channel_of[m]) if channel_of.get(m) in features else -1 for m in table.markers]


def annotate(table: MarkerTable, columns: list[int], x: np.ndarray, seed: int = 0,
             progress: Progress | None = None, should_stop: ShouldStop | None = None) -> TableAnnotation:
    """Name every cell of `x` (transformed features; `columns` = each table marker's feature column, -1 for none)."""
    report = progress or (lambda f, m: None)
    annotator = TableAnnotator(table, columns, seed).fit(x, lambda f, m: report(0.6 * f, m), should_stop)
    calls = np.empty(len(x), np.int16)
    confidence = np.empty(len(x), np.float32)
    for start in range(0, len(x), CHUNK):
        check_stop(should_stop)
        report(0.6 + 0.35 * start / max(len(x), 1), "naming every cell")
        part = annotator.predict_proba(x[start:start + CHUNK])
        calls[start:start + CHUNK], confidence[start:start + CHUNK] = calls_from(part)
    notes = [f"The marker table's {m} is not among the features in use; it is left out."
             for m, c in zip(table.markers, columns) if c < 0]
    report(1.0, "named")
    return TableAnnotation(annotator.populations, calls, confidence, explain(annotator, x, calls, seed), notes, seed)
