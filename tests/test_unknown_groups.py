"""Groups of unknown cells on real data: the cells of a population nobody named form a compact group of their own,
described by its markers, whose most typical cells can found that population."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import LEVINE_UNNAMED, levine_with_unnamed
from cytoauto_core.tools.models.novelty import fit_novelty
from cytoauto_core.tools.unknown_groups import NO_GROUP, SEED_CELLS, describe, find_unknown_groups

HIDDEN = LEVINE_UNNAMED  # as in test_novelty: distinct populations nobody labels


@pytest.fixture(scope="module")
def levine():
    """Levine_32dim's features and the cells called unknown with 10 labels per population except HIDDEN."""
    x, names, markers, known, lab, y = levine_with_unnamed()
    model = fit_novelty(x[lab], y, 0.01, seed=0)
    return x, names, markers, model.unknown(model.novelty(x))


def majority(names: np.ndarray) -> tuple[str, float]:
    counts = pd.Series(names).value_counts()
    return str(counts.index[0]), float(counts.iloc[0] / counts.sum())


def test_each_unnamed_population_is_a_compact_group_whose_typical_cells_can_found_it(levine):
    x, names, markers, unknown = levine
    groups = find_unknown_groups(x, unknown, markers, seed=0)
    assert groups.n_unknown == unknown.sum()
    assert groups.n_groups >= 2 and groups.sizes() == sorted(groups.sizes(), reverse=True)
    assert not (groups.group[~unknown] != NO_GROUP).any(), "only unknown cells are grouped"
    found = {}
    for g in range(groups.n_groups):
        name, share = majority(names[groups.members(g)])
        found.setdefault(name, (g, share))
    monocytes, share = found["Monocytes"]
    assert share > 0.9  # measured 1.00 (4,405 of the 6,789 unknown cells; 2,075 scattered)
    assert found["CD16+_NK_cells"][1] > 0.9  # measured 1.00 (309 cells)
    assert "CD64" in groups.descriptions[monocytes].split(";")[0], groups.descriptions[monocytes]
    assert "CD16" in groups.descriptions[found["CD16+_NK_cells"][0]].split(";")[0]
    seeds = groups.seed_cells(x, monocytes)
    assert seeds.size == SEED_CELLS and (names[seeds] == "Monocytes").all()
    again = find_unknown_groups(x, unknown, markers, seed=0)
    np.testing.assert_array_equal(again.group, groups.group)  # seeded


def test_a_small_subsample_finds_the_same_groups(levine):
    x, names, markers, unknown = levine
    groups = find_unknown_groups(x, unknown, markers, max_cells=1_500, seed=1)
    assert sum(groups.sizes()) + groups.scattered() == unknown.sum(), "every unknown cell joins a group or none"
    assert majority(names[groups.members(0)])[0] == "Monocytes"
    assert majority(names[groups.members(0)])[1] > 0.9


def test_few_unknown_cells_make_no_group_and_scattered_ones_no_compact_group():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2_000, 4)).astype(np.float32)
    few = np.zeros(len(x), bool)
    few[:3] = True
    assert find_unknown_groups(x, few, list("abcd")).n_groups == 0
    x[:300] += np.array([6, 0, 0, -6], np.float32)  # one tight cloud of unknown cells …
    far = np.zeros(len(x), bool)
    far[:300] = True
    far[rng.choice(np.arange(300, 2_000), 20, replace=False)] = True  # … and a few known-looking cells between
    x[far & (np.arange(len(x)) >= 300)] *= 4
    groups = find_unknown_groups(x, far, list("abcd"))
    assert groups.n_groups >= 1 and set(groups.members(0)) <= set(range(300))
    assert groups.descriptions[0] == "high a; low d"


def test_description_names_markers_far_from_all_cells():
    assert describe(np.array([2.0, -1.0, 0.1, 0.6]), ["CD14", "CD3", "CD19", "CD33"]) == "high CD14, CD33; low CD3"
    assert describe(np.zeros(3), ["a", "b", "c"]) == "close to all cells' medians"
