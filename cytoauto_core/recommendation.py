"""Which model to apply: decided by evidence from many labelled data sets, not by a cross-validation on a handful of cells.

With 5–25 labels per population a cross-validation holds out one to eight cells per population, so its scores
cannot separate models that differ by a few points of macro-F1. The rule below was chosen and validated on the dev
suite (bench/devsuite.py prints how often it is within 0.01 macro-F1 of the best model of each case).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEVSUITE_MAX_LABELS = 25  # the largest label budget the rule was validated at


@dataclass(frozen=True)
class Recommendation:
    """The model to apply and the one-line reason shown beside it."""

    model: str
    reason: str


def recommend_model(labels_per_population: Sequence[int]) -> Recommendation:
    """VIME at every label budget: on the dev suite it had the highest mean macro-F1 and the best mean rank at 5, 10
    and 25 labels per population (BENCHMARKS.md); beyond the budgets it was validated at, the reason points to the
    comparison on the user's own labels."""
    most = max(labels_per_population)
    if most > DEVSUITE_MAX_LABELS:
        return Recommendation("VIME", f"VIME had the highest mean macro-F1 on eight labelled reference data sets with "
                                      f"5–{DEVSUITE_MAX_LABELS} labels per population; with up to {most:,} labels here, "
                                      f"the comparison table on your own labels is worth a look too (add VIME to the models "
                                      f"compared to score it there).")
    return Recommendation("VIME", f"With at most {most} labels per population a cross-validation cannot tell the "
                                  "models apart; on eight labelled reference data sets VIME had the highest mean "
                                  "macro-F1 at 5, 10 and 25 labels per population (BENCHMARKS.md).")
