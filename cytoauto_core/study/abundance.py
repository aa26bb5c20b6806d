"""Cells per population and sample, as a matrix for statistics and as a long table grouped by condition."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .samples import SAMPLE


@dataclass
class CountTable:
    """Counts (samples × populations, assigned cells only) and each sample's total cells (unassigned included)."""

    counts: pd.DataFrame
    totals: pd.Series


def count_table(population_id: np.ndarray, names: dict[int, str], sample_ids: np.ndarray,
                samples: list[str]) -> CountTable:
    """Count every population in every sample with one bincount (no per-cell Python, no copy of the labels)."""
    ids = sorted(names)
    column_of = np.full(max(ids, default=-1) + 2, len(ids), dtype=np.int64)  # unknown ids and -1 → last column
    column_of[ids] = np.arange(len(ids))
    pop = np.asarray(population_id)
    columns = column_of[np.where((pop >= 0) & (pop < len(column_of) - 1), pop, -1)]
    flat = np.bincount(np.asarray(sample_ids, dtype=np.int64) * (len(ids) + 1) + columns,
                       minlength=len(samples) * (len(ids) + 1)).reshape(len(samples), len(ids) + 1)
    counts = pd.DataFrame(flat[:, :-1], index=pd.Index(samples, name=SAMPLE), columns=[names[i] for i in ids])
    return CountTable(counts, pd.Series(flat.sum(axis=1), index=counts.index, name="total"))


def by_condition(table: CountTable, metadata: pd.DataFrame, column: str) -> pd.DataFrame:
    """Long table: sample, `column`, population, cells, percent of the sample; ordered by condition then sample."""
    groups = metadata.set_index(SAMPLE)[column].reindex(table.counts.index)
    long = table.counts.rename_axis(columns="population").stack().rename("cells").reset_index()
    long["percent"] = 100 * long["cells"] / long[SAMPLE].map(table.totals).where(lambda t: t > 0)
    long.insert(1, column, long[SAMPLE].map(groups))
    order = {value: i for i, value in enumerate(dict.fromkeys(groups.dropna()))}
    rank = long[column].map(order).fillna(len(order))
    return long.assign(_rank=rank).sort_values(["_rank", SAMPLE], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)
