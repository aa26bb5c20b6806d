"""Compact groups among the unknown cells: candidates for a population the user has not named yet.

Features are standardised like all cells (on a seeded subsample of at most MAX_CELLS). Among a subsample of at most
MAX_CELLS unknown cells (see models.novelty), only the dense ones are grouped: those whose distance to their
NEIGHBOURS-th nearest cell is at most DENSE × the typical one of the named populations' cells, so cells scattered
between populations (transitional, debris) do not blur the groups. These are split by k-means (seeded); the number
of groups, 1 to MAX_GROUPS, is the one with the best silhouette (a single group when no split reaches
ONE_GROUP_SILHOUETTE). Every unknown cell then joins its nearest group if it lies within the group's reach (the REACH
quantile of its dense cells' distances to the centre). A group is kept when it is compact — its median radius at most
LOOSE × the typical group's (size-weighted median) — and large enough (MIN_SHARE of the unknown cells and at least
MIN_LABELS_FOR_TRAINING cells); the other unknown cells are scattered, in no group. Each group is described by the
markers whose median differs most from all cells' (in standard deviations of all cells).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from ..base.labelled import MIN_LABELS_FOR_TRAINING
from .clustering.profile import central_cells, cluster_medians
from .embeddings import subsample

MAX_CELLS = 20_000  # unknown cells grouped, and cells of all the scale and density come from: seconds on 1M cells
SILHOUETTE_CELLS = 3_000  # cells each number of groups is scored on
MAX_GROUPS = 6
ONE_GROUP_SILHOUETTE = 0.25  # below this for every split, the unknown cells form one group
LOOSE = 1.5  # a group spread wider than this × the typical group's median radius is scattered cells, not a group
NEIGHBOURS = 15  # a cell's density: its distance to its 15th nearest neighbour among a subsample of all cells
DENSE = 1.25  # unknown cells at most this × the named populations' median such distance are dense enough to group
REACH = 0.9  # a group reaches as far from its centre as this quantile of its dense cells' distances
MIN_SHARE = 0.02  # of the unknown cells
SHIFT = 0.5  # standard deviations: a marker this far from all cells' median describes a group
SEED_CELLS = 25  # cells of a group labelled when it becomes a population
CHUNK = 65_536
NO_GROUP = -1


@dataclass
class UnknownGroups:
    """Per cell its group (0 = largest, NO_GROUP for known and scattered cells), and one description per group."""

    group: np.ndarray
    descriptions: list[str]
    n_unknown: int

    @property
    def n_groups(self) -> int:
        return len(self.descriptions)

    def members(self, g: int) -> np.ndarray:
        """Rows of group `g` (sorted)."""
        return np.flatnonzero(self.group == g)

    def sizes(self) -> list[int]:
        return np.bincount(self.group[self.group >= 0], minlength=self.n_groups).tolist()

    def scattered(self) -> int:
        """Unknown cells in no group."""
        return self.n_unknown - sum(self.sizes())

    def seed_cells(self, x: np.ndarray, g: int, n: int = SEED_CELLS) -> np.ndarray:
        """The `n` cells of group `g` nearest its median (its most typical cells), to label as a new population."""
        return central_cells(x, self.group, g, n)


def find_unknown_groups(x: np.ndarray, unknown: np.ndarray, markers: list[str], *, max_groups: int = MAX_GROUPS,
                        max_cells: int = MAX_CELLS, seed: int = 0) -> UnknownGroups:
    """Compact groups of the `unknown` cells (boolean mask over the rows of `x`, the features the model sees)."""
    unknown = np.asarray(unknown, bool)
    rows = np.flatnonzero(unknown)
    group = np.full(len(x), NO_GROUP, np.int32)
    if rows.size < MIN_LABELS_FOR_TRAINING:
        return UnknownGroups(group, [], int(rows.size))
    pool = subsample(len(x), max_cells, seed)
    reference = np.asarray(x[pool], np.float32)
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    fit_rows = rows[subsample(rows.size, max_cells, seed)]
    fitted = (np.asarray(x[fit_rows], np.float32) - mean) / scale
    fitted = fitted[dense_cells(fitted, (reference - mean) / scale, ~unknown[pool], np.isin(fit_rows, pool))]
    if len(fitted) < MIN_LABELS_FOR_TRAINING:
        return UnknownGroups(group, [], int(rows.size))
    km = _best_kmeans(fitted, min(max_groups, fitted.shape[0] // MIN_LABELS_FOR_TRAINING), seed)
    spread = [np.linalg.norm(fitted[km.labels_ == c] - km.cluster_centers_[c], axis=1) for c in range(km.n_clusters)]
    radius = np.array([np.median(d) for d in spread])
    reach = np.array([np.quantile(d, REACH) for d in spread])
    distances = np.concatenate([km.transform((np.asarray(x[rows[s:s + CHUNK]], np.float32) - mean) / scale)
                                for s in range(0, rows.size, CHUNK)])
    nearest = distances.argmin(axis=1)
    nearest[distances.min(axis=1) > reach[nearest]] = km.n_clusters  # beyond its group's dense cells: in no group
    counts = np.bincount(nearest, minlength=km.n_clusters + 1)[:km.n_clusters]
    typical = _weighted_median(radius, counts)
    kept = [c for c in np.argsort(-counts, kind="stable")
            if radius[c] <= LOOSE * typical and counts[c] >= max(MIN_LABELS_FOR_TRAINING, MIN_SHARE * rows.size)]
    for g, c in enumerate(kept):
        group[rows[nearest == c]] = g
    medians = cluster_medians(x, group, markers, seed).to_numpy(np.float64)
    shift = (medians - np.median(reference, axis=0)) / scale
    return UnknownGroups(group, [describe(s, markers) for s in shift], int(rows.size))


def dense_cells(z: np.ndarray, pool: np.ndarray, named: np.ndarray, in_pool: np.ndarray) -> np.ndarray:
    """Which cells of `z` lie as densely as the cells of named populations: their distance to the NEIGHBOURS-th
    nearest cell of `pool` (a subsample of all cells; `named`: its cells that are not unknown; `in_pool`: the cells
    of `z` that are in it, whose nearest neighbour is themselves) at most DENSE × the named cells' median one."""
    k = min(NEIGHBOURS, len(pool) - 1)
    if k < 1 or not named.any():
        return np.ones(len(z), bool)
    search = NearestNeighbors(n_neighbors=k + 1).fit(pool)
    own = search.kneighbors(z)[0]
    own = np.where(in_pool, own[:, k], own[:, k - 1])
    typical = np.median(search.kneighbors(pool[named])[0][:, k])
    return own <= DENSE * typical


def _best_kmeans(z: np.ndarray, max_groups: int, seed: int) -> KMeans:
    """k-means (seeded) with the number of groups of best silhouette, or one group when no split is clear."""
    best, best_score = KMeans(n_clusters=1, n_init=1, random_state=seed).fit(z), ONE_GROUP_SILHOUETTE
    for k in range(2, max_groups + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(z)
        if np.unique(km.labels_).size < 2:
            continue
        score = silhouette_score(z, km.labels_, sample_size=min(SILHOUETTE_CELLS, len(z)), random_state=seed)
        if score > best_score:
            best, best_score = km, score
    return best


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def describe(shift: np.ndarray, markers: list[str], top: int = 3) -> str:
    """'high CD33, CD14, CD11b; low CD3': the markers furthest above and below all cells' median (≥ SHIFT SDs)."""
    order = np.argsort(-shift, kind="stable")
    high = [markers[j] for j in order[:top] if shift[j] >= SHIFT]
    low = [markers[j] for j in order[::-1][:top - 1] if shift[j] <= -SHIFT]
    parts = ([f"high {', '.join(high)}"] if high else []) + ([f"low {', '.join(low)}"] if low else [])
    return "; ".join(parts) or "close to all cells' medians"
