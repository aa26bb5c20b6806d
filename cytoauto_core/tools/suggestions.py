"""Which cells to label next: compact groups in dense regions where the model is unsure or no label is near.

A cell's *doubt* is the larger of two terms in [0, 1]:
- uncertainty, 1 − (top-1 − top-2 probability), the model's own margin; and
- remoteness, 1 − d_ref / d: d is its distance to the nearest labelled cell (standardised markers) and d_ref what
  that distance would be had the labels been spread like the cells, so a cell twice as far from every label as
  expected counts 0.5 whatever the model claims (a probability is not a distance).

The candidate cells (a seeded subsample of the unlabelled ones) are split into k-means regions; a region's score
is the sum of its cells' doubt, so a dense region of doubtful cells outranks a few outliers, each cell weighted so
that every population the model predicts counts the same in total (as in macro-F1: rare populations are not drowned
by abundant ones). The best regions each give one group of at most `group_size` cells, drawn at random (seeded)
among its more doubtful half. The user answers a group with one click; a group of MIN_LABELS_FOR_TRAINING cells can
found a new population alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from ..base.labelled import MIN_LABELS_FOR_TRAINING
from .embeddings import subsample

MAX_CANDIDATES = 20_000  # cells the regions are computed on; a seeded subsample keeps it to a second on 1M cells
NO_PROPOSAL = -1


@dataclass
class Suggestions:
    """Suggested cells (row indices), the population the model gives each (NO_PROPOSAL without a model), the group
    each belongs to (0 = most useful) and a one-line explanation."""

    cells: np.ndarray
    proposed: np.ndarray
    group: np.ndarray
    explanation: str

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size else 0

    def members(self, group: int) -> np.ndarray:
        """Rows of one group."""
        return self.cells[self.group == group]

    def group_proposal(self, group: int) -> int:
        """The population the model gives most of a group's cells (ties: the smallest id), or NO_PROPOSAL."""
        ids = self.proposed[self.group == group]
        ids = ids[ids != NO_PROPOSAL]
        if ids.size == 0:
            return NO_PROPOSAL
        values, counts = np.unique(ids, return_counts=True)
        return int(values[np.argmax(counts)])


def candidate_rows(unlabelled: np.ndarray, max_cells: int = MAX_CANDIDATES, seed: int = 0) -> np.ndarray:
    """The cells suggestions are chosen among (sorted): every unlabelled row, or a seeded subsample of `max_cells`."""
    rows = np.sort(np.asarray(unlabelled, np.int64))
    return rows[subsample(rows.size, max_cells, seed)]


def uncertainty(proba: np.ndarray | None, n: int) -> np.ndarray:
    """1 − (top-1 − top-2 probability) per cell; zeros without probabilities or with a single class."""
    if proba is None or proba.shape[1] < 2:
        return np.zeros(n, np.float32)
    top2 = np.partition(np.asarray(proba, np.float32), -2, axis=1)[:, -2:]
    return (1.0 - (top2[:, 1] - top2[:, 0])).astype(np.float32)


def remoteness(z_candidates: np.ndarray, z_labelled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1 − d_ref / d per candidate (0 when negative): d is its distance to the nearest labelled cell, d_ref to the
    nearest of as many candidates drawn at random (itself excluded), i.e. where the nearest label would be had the
    labels been spread like the cells. About 0 where labels are as dense as cells, near 1 far from every label;
    ones when nothing is labelled."""
    if len(z_labelled) == 0:
        return np.ones(len(z_candidates), np.float32)
    d = NearestNeighbors(n_neighbors=1).fit(z_labelled).kneighbors(z_candidates)[0][:, 0]
    ref = rng.choice(len(z_candidates), min(len(z_labelled), len(z_candidates) - 1), replace=False)
    near, index = NearestNeighbors(n_neighbors=2).fit(z_candidates[ref]).kneighbors(z_candidates)
    d_ref = np.where(ref[index[:, 0]] == np.arange(len(z_candidates)), near[:, 1], near[:, 0])
    return np.clip(1.0 - d_ref / np.maximum(d, 1e-12), 0.0, 1.0).astype(np.float32)


def doubtful_pick(doubt: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k indices drawn at random (seeded) among the more doubtful half of the cells (at least k of them): doubtful,
    yet spread over that half rather than k copies of its single most doubtful spot."""
    order = np.argsort(-doubt, kind="stable")
    pool = order[:max(k, (len(order) + 1) // 2)]
    return np.sort(rng.choice(pool, min(k, len(pool)), replace=False))


def population_weight(proba: np.ndarray | None) -> np.ndarray | float:
    """Per cell, the mean over its populations (weighted by its probabilities) of 1 / that population's expected
    number of candidate cells, scaled to average 1: every population the model sees weighs the same in total, as
    in macro-F1, so a rare population's regions compete with an abundant one's. 1 without a model."""
    if proba is None:
        return 1.0
    p = np.asarray(proba, np.float64)
    per_population = len(p) / (p.shape[1] * np.maximum(p.sum(axis=0), 1.0))
    return p @ per_population


def suggest_cells(
    x: np.ndarray, candidates: np.ndarray, proba: np.ndarray | None, labelled: np.ndarray, *,
    class_ids: np.ndarray | None = None, n_cells: int = 25, group_size: int = MIN_LABELS_FOR_TRAINING,
    n_regions: int | None = None, seed: int = 0, source: str = "the model",
) -> Suggestions:
    """Propose about `n_cells` cells to label next, in groups of at most `group_size` from distinct regions.

    x: features of every cell; candidates: rows to choose among (labelled rows are dropped); proba: the model's
    probabilities for `candidates` (same order), None when there is no model yet; labelled: rows already labelled;
    class_ids: the population id of each probability column (default 0..C-1); n_regions: k-means regions (default
    max(20, 4 × groups wanted)); source: how the probabilities were made, for the explanation.
    """
    candidates = np.asarray(candidates, np.int64)
    labelled = np.asarray(labelled, np.int64)
    keep = ~np.isin(candidates, labelled)
    candidates = candidates[keep]
    proba = None if proba is None else np.asarray(proba)[keep]
    if candidates.size == 0 or n_cells <= 0:
        return Suggestions(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                           "no unlabelled cells to suggest")
    group_size = max(1, int(group_size))
    wanted_groups = -(-int(n_cells) // group_size)
    z_all = np.asarray(x[np.concatenate([candidates, labelled])], np.float32)
    scale = z_all.std(axis=0)
    z_all = (z_all - z_all.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    z, z_labelled = z_all[:candidates.size], z_all[candidates.size:]

    k = min(n_regions or max(20, 4 * wanted_groups), candidates.size)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(z)
    unsure = uncertainty(proba, candidates.size)
    remote = remoteness(z, z_labelled, np.random.default_rng(seed))
    doubt = np.maximum(unsure, remote)
    score = np.bincount(km.labels_, weights=doubt * population_weight(proba), minlength=k)

    picks, groups = [], []
    for region in np.argsort(-score, kind="stable"):
        members = np.flatnonzero(km.labels_ == region)
        room = int(n_cells) - sum(len(p) for p in picks)
        if room <= 0:
            break
        if members.size:
            rng = np.random.default_rng([seed, int(region)])
            picks.append(members[doubtful_pick(doubt[members], min(group_size, room), rng)])
            groups.append(np.full(len(picks[-1]), len(groups), np.int64))
    chosen = np.concatenate(picks)
    if proba is None:
        proposed = np.full(chosen.size, NO_PROPOSAL, np.int64)
    else:
        ids = np.arange(proba.shape[1]) if class_ids is None else np.asarray(class_ids)
        proposed = ids[proba[chosen].argmax(axis=1)]
    return Suggestions(candidates[chosen], proposed, np.concatenate(groups),
                       explain(unsure[chosen], remote[chosen], len(groups), source))


def explain(unsure: np.ndarray, remote: np.ndarray, n_groups: int, source: str) -> str:
    """One line: how many cells and groups, what made them doubtful, and where the probabilities came from."""
    far = int(np.sum(remote > unsure))
    cells = "cell" if far == 1 else "cells"
    what = ("dense regions far from every label" if far > len(unsure) / 2 else "most uncertain dense regions"
            if far == 0 else f"most uncertain dense regions ({far} {cells} far from every label)")
    return f"{len(unsure)} cells in {n_groups} groups: {what}; probabilities from {source}."
