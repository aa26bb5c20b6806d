"""Whether a result forces cells into the few populations a user named (a classifier has no 'other' class)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

COVERED = 0.9  # a result places at least this share of cells in named populations…
FAR_ABOVE = 3.0  # …and every named population holds at least this many times the cells labelled in it
LABELLED_AT_MOST = 0.5  # (only a sparsely labelled dataset can be over-filled)
SIZABLE_CLUSTER = 0.01  # a cluster of at least this share of cells counts as structure a name could go to
CLUSTERS_PER_NAME = 2.0  # the clustering finds at least this many sizable clusters per named population


def forced_notice(predicted: np.ndarray, names: Mapping[int, str], labelled: np.ndarray,
                  label_names: Mapping[int, str], cluster_sizes: Mapping[int, int] | None = None) -> str | None:
    """One sentence when cells look forced into few named populations, else None.

    `predicted` and `labelled` are per-cell population ids (-1: unassigned / unlabelled), named by `names` and
    `label_names` (matched by name, so a model applied from another dataset works too); `cluster_sizes` are the cells
    per cluster of the dataset's clustering, when there is one.
    """
    n_cells = len(predicted)
    if n_cells == 0 or not names:
        return None
    ids, counts = np.unique(np.asarray(predicted)[np.asarray(predicted) >= 0], return_counts=True)
    predicted_by_name = {names[int(i)]: int(c) for i, c in zip(ids, counts) if int(i) in names}
    covered = sum(predicted_by_name.values()) / n_cells
    if covered < COVERED:
        return None
    ids, counts = np.unique(np.asarray(labelled)[np.asarray(labelled) >= 0], return_counts=True)
    labelled_by_name = {label_names[int(i)]: int(c) for i, c in zip(ids, counts) if int(i) in label_names}
    shared = [n for n in predicted_by_name if labelled_by_name.get(n)]
    ratios = [predicted_by_name[n] / labelled_by_name[n] for n in shared]
    over_filled = (bool(shared) and len(shared) == len(names) and min(ratios) >= FAR_ABOVE
                   and sum(labelled_by_name.values()) <= LABELLED_AT_MOST * n_cells)
    sizable = sum(1 for c in (cluster_sizes or {}).values() if c >= SIZABLE_CLUSTER * n_cells)
    few_names = sizable >= CLUSTERS_PER_NAME * len(names)
    if not (over_filled or few_names):
        return None
    why = []
    if over_filled:
        why.append(f"each holds {min(ratios):.0f}–{max(ratios):.0f}× the cells you labelled in it")
    if few_names:
        why.append(f"the clustering finds {sizable} clusters of 1 % or more")
    return (f"{covered:.1%} of cells were placed in your {len(names)} named population(s), though "
            f"{' and '.join(why)}: cells of populations you have not named are forced into the nearest named one "
            f"— name them on the Label page, or raise the confidence threshold to leave them unassigned.")
