"""VIME's few-label experts: what they learn from a handful of labels and what they keep for inference."""
from __future__ import annotations

import numpy as np
import pytest

from cytoauto_core.models import TrainingCancelled, softmax
from cytoauto_core.models.baselines import booster_probs
from cytoauto_core.models.experts import fit_experts
from cytoauto_core.transforms import Scaler
from synthetic import gaussian_cells, label_split


def test_experts_label_separated_populations_from_five_labels_each():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    classes, yl = np.unique(y[lab], return_inverse=True)
    experts = fit_experts(s[lab], yl.astype(np.int32), len(classes), seed=0, threads=1)
    kernel, bias = experts.linear
    linear = softmax(s[rest] @ kernel + bias)
    assert kernel.shape == (x.shape[1], len(classes))
    assert np.mean(classes[linear.argmax(axis=1)] == y[rest]) > 0.95
    booster = booster_probs(experts.booster, s[rest], len(classes))
    assert np.mean(classes[booster.argmax(axis=1)] == y[rest]) > 0.9


def test_experts_report_progress_in_order_and_stop_when_asked():
    x, y = gaussian_cells()
    lab, _ = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    _, yl = np.unique(y[lab], return_inverse=True)
    seen: list[float] = []
    fit_experts(s[lab], yl.astype(np.int32), 4, seed=0, threads=1, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(TrainingCancelled):
        fit_experts(s[lab], yl.astype(np.int32), 4, seed=0, threads=1, should_stop=lambda: True)
