"""The model recommendation shown on the Train page."""
from __future__ import annotations

from cytoauto_core.tools.recommendation import (
    DEVSUITE_BEST_BASELINE,
    DEVSUITE_MAX_LABELS,
    DEVSUITE_VIME,
    recommend_model,
)
from cytoauto_core.tools.training import MODEL_NAMES


def test_few_labels_recommend_vime_and_say_why_in_one_line():
    rec = recommend_model([5, 12, 7])
    assert rec.model == "VIME" and rec.model in MODEL_NAMES
    assert "at most 12 labels per population" in rec.reason and "\n" not in rec.reason


def test_the_reason_gives_the_evidence_in_numbers_not_a_file_name():
    reason = recommend_model([5, 12, 7]).reason
    assert "BENCHMARKS" not in reason and "8 public labelled cytometry data sets" in reason
    assert "VIME's mean macro-F1 was 0.71 / 0.78 / 0.82 against 0.67 / 0.71 / 0.78" in reason
    assert all(v > b for v, b in zip(DEVSUITE_VIME, DEVSUITE_BEST_BASELINE))
    assert "23 of 24" in reason


def test_beyond_the_validated_budgets_the_reason_points_to_the_users_own_comparison():
    rec = recommend_model([DEVSUITE_MAX_LABELS + 1, 3000])
    assert rec.model == "VIME" and "3,000 labels" in rec.reason and "your own held-out labels" in rec.reason
