"""Predicted populations against reference labels (a gated CSV, a FlowJo workspace's gates), matched by name.

Only cells the reference names are scored: a cell it leaves out (not in the CSV, in no chosen gate, '' or
'unassigned') tells nothing about the call. Names match as everywhere in the app: case, spaces and underscores
ignored ('CD4 T cells' == 'CD4_T_cells'). A predicted 'unassigned' or 'unknown' never agrees with a reference name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..base.dataset import NOT_A_POPULATION, UNASSIGNED, UNKNOWN
from ..base.errors import CytoInputError, quoted
from ..base.labelled import name_key


@dataclass
class ReferenceComparison:
    """How the calls compare with the reference, over the cells the reference names."""

    agreement: float  # share of reference cells called by the same name
    precision: float  # share of the named calls (not unassigned or unknown) on reference cells that are right
    reference_cells: int
    called_cells: int  # reference cells called a named population
    per_population: pd.DataFrame  # one row per reference population: cells, agreement, called as it, precision
    confusion: pd.DataFrame  # cell counts, rows reference names, columns predicted names (unassigned, unknown last)


def reference_from_table(frame: pd.DataFrame, cell_column: str, population_column: str, n_cells: int,
                         first_index: int = 0) -> np.ndarray:
    """Per-cell reference names ('' where the table names none) from rows of (cell index, population), as the Label
    page's CSV import reads them: `first_index` 0 (Python, this app's exports) or 1 (R, FlowJo)."""
    if cell_column not in frame.columns or population_column not in frame.columns or cell_column == population_column:
        raise CytoInputError("A reference file needs two different columns for the cell index and the population.")
    named = frame[population_column].notna() & (frame[population_column].astype(str).str.strip() != "")
    raw = pd.to_numeric(frame.loc[named, cell_column], errors="coerce")
    cells = raw - first_index
    if not (raw.notna() & (raw == raw.round())).all() or (cells < 0).any() or (cells >= n_cells).any():
        raise CytoInputError(f"The reference file's column {quoted(cell_column)} has values that are not cell indices "
                             f"{first_index}–{n_cells - 1 + first_index:,} of this dataset ({first_index}-based).")
    if cells.duplicated().any():
        raise CytoInputError(f"The reference file names some cells twice in column {quoted(cell_column)}.")
    names = np.full(n_cells, "", dtype=object)
    names[cells.to_numpy(np.int64)] = frame.loc[named, population_column].astype(str).str.strip().to_numpy(object)
    return names


def compare_with_reference(predicted: np.ndarray, reference: np.ndarray) -> ReferenceComparison:
    """Agreement, precision, a per-population table and a confusion matrix of per-cell predicted names (including
    'unassigned' and 'unknown') against per-cell reference names."""
    predicted = np.asarray(predicted, dtype=object).astype(str)
    reference = np.asarray(reference, dtype=object).astype(str)
    if predicted.shape != reference.shape:
        raise ValueError("predicted and reference must name the same cells")
    keep = ~np.isin(np.char.lower(np.char.strip(reference)), NOT_A_POPULATION)
    pred, ref = predicted[keep], reference[keep]
    keys, called_keys = _keys(ref), _keys(pred)
    same = called_keys == keys
    named = ~np.isin(pred, (UNASSIGNED, UNKNOWN))
    spelled = pd.Series(ref).groupby(keys).agg(lambda s: s.mode().iloc[0])  # one spelling per reference population
    return ReferenceComparison(
        agreement=float(same.mean()) if same.size else float("nan"),
        precision=float(same[named].mean()) if named.any() else float("nan"),
        reference_cells=int(keep.sum()), called_cells=int(named.sum()),
        per_population=_per_population(keys, same, named, called_keys, spelled),
        confusion=_confusion(spelled[keys].to_numpy(), pred))


def _keys(names: np.ndarray) -> np.ndarray:
    """Each cell's name as names are matched (name_key), worked out once per distinct name."""
    codes, distinct = pd.factorize(names)
    return np.array([name_key(n) for n in distinct] + [""], dtype=object)[codes]


def _per_population(keys: np.ndarray, same: np.ndarray, named: np.ndarray, called_keys: np.ndarray,
                    spelled: pd.Series) -> pd.DataFrame:
    """Per reference population: its cells, the share called by its name, the reference cells called by its name and
    the share of those whose reference is it (the precision of that call)."""
    rows = []
    for key, name in spelled.items():
        mine, called = keys == key, named & (called_keys == key)
        rows.append({"population": name, "cells": int(mine.sum()), "agreement": float(same[mine].mean()),
                     "called as it": int(called.sum()),
                     "precision": float(same[called].mean()) if called.any() else float("nan")})
    columns = ["population", "cells", "agreement", "called as it", "precision"]
    return pd.DataFrame(rows, columns=columns).sort_values("cells", ascending=False, ignore_index=True)


def _confusion(reference: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Cell counts by reference name (rows) and predicted name (columns): each reference population's own name first,
    in the rows' order, then other names, then unassigned and unknown."""
    table = pd.crosstab(pd.Series(reference, name="reference"), pd.Series(predicted, name="predicted"))
    rows = sorted(table.index, key=lambda name: -int(table.loc[name].sum()))
    named = [c for c in table.columns if c not in (UNASSIGNED, UNKNOWN)]
    matched = [c for r in rows for c in named if name_key(c) == name_key(r)]
    others = sorted(set(named) - set(matched))
    return table.loc[rows, matched + others + [c for c in (UNASSIGNED, UNKNOWN) if c in table.columns]]
