"""The model recommendation shown on the Train page."""
from __future__ import annotations

from cytoauto_core.recommendation import DEVSUITE_MAX_LABELS, recommend_model
from cytoauto_core.training import MODEL_NAMES


def test_few_labels_recommend_vime_and_say_why_in_one_line():
    rec = recommend_model([5, 12, 7])
    assert rec.model == "VIME" and rec.model in MODEL_NAMES
    assert "at most 12 labels per population" in rec.reason and "\n" not in rec.reason


def test_beyond_the_validated_budgets_the_reason_points_to_the_users_own_comparison():
    rec = recommend_model([DEVSUITE_MAX_LABELS + 1, 3000])
    assert rec.model == "VIME" and "3,000 labels" in rec.reason and "comparison table" in rec.reason
