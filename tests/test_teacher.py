"""VIME's first guess: the experts' agreement, its smoothing over neighbours, and what it keeps for inference."""
from __future__ import annotations

import numpy as np

from cytoauto_core.models import softmax
from cytoauto_core.models.teacher import MAX_SMOOTHED_CELLS, agreement, fit_first_guess
from cytoauto_core.transforms import Scaler
from synthetic import gaussian_cells, label_split


def test_agreement_is_confident_only_where_every_expert_is():
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]], np.float32)
    b = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]], np.float32)
    g = agreement(a, b)
    np.testing.assert_allclose(g.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(g[0], [0.9, 0.1], rtol=1e-5)  # agreeing experts keep their confidence
    np.testing.assert_allclose(g[1], [0.5, 0.5], rtol=1e-5)  # opposite convictions cancel
    assert 0.5 < g[2, 0] < 0.9  # an undecided expert tempers a confident one
    assert 0.6 < agreement(a, b, b)[1, 1] < 0.9  # two against one: the majority, with less confidence


def test_first_guess_labels_separated_populations_and_keeps_its_experts():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    s = Scaler("standard").fit(x).transform(x)
    classes, yl = np.unique(y[lab], return_inverse=True)
    guess = fit_first_guess(s[lab], yl.astype(np.int32), s[rest], len(classes), seed=0, threads=1,
                            rng=np.random.default_rng(0))
    assert np.array_equal(guess.rows, np.arange(len(rest)))
    assert np.mean(classes[guess.probs.argmax(axis=1)] == y[rest]) > 0.97
    kernel, bias = guess.linear
    linear = softmax(s[rest] @ kernel + bias)
    assert kernel.shape == (x.shape[1], len(classes)) and np.mean(classes[linear.argmax(axis=1)] == y[rest]) > 0.95


def test_smoothing_corrects_a_stray_cell_the_experts_get_wrong(monkeypatch):
    """A cell on the edge of population a, nearer the labels that pull the experts towards b, takes the population
    of its neighbours once smoothed, and not without smoothing."""
    from cytoauto_core.models import teacher

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 0.3, (200, 2)), rng.normal(4, 0.3, (200, 2))
    s_u = np.concatenate([a, b, [[1.8, 1.8]]]).astype(np.float32)
    s_l = np.array([[0, 0], [0.2, -0.1], [4, 4], [3.9, 4.1], [2.2, 2.2], [2.3, 2.1]], np.float32)
    yl = np.array([0, 0, 1, 1, 1, 1], np.int32)
    guess = fit_first_guess(s_l, yl, s_u, 2, seed=0, threads=1, rng=np.random.default_rng(0))
    assert guess.probs[:200, 0].mean() > 0.8 and guess.probs[200:400, 1].mean() > 0.8
    assert guess.probs[-1, 0] > 0.6, "the stray cell follows its neighbours in population a"
    monkeypatch.setattr(teacher, "SMOOTHING_STEPS", 0)
    unsmoothed = fit_first_guess(s_l, yl, s_u, 2, seed=0, threads=1, rng=np.random.default_rng(0))
    assert unsmoothed.probs[-1, 0] < 0.5


def test_only_a_seeded_subsample_of_a_large_pool_is_smoothed():
    rng = np.random.default_rng(2)
    s_u = rng.normal(0, 1, (MAX_SMOOTHED_CELLS + 500, 3)).astype(np.float32)
    s_l = np.array([[-1, 0, 0], [-1.2, 0, 0], [1, 0, 0], [1.1, 0, 0]], np.float32)
    yl = np.array([0, 0, 1, 1], np.int32)
    first = fit_first_guess(s_l, yl, s_u, 2, seed=0, threads=1, rng=np.random.default_rng(5))
    again = fit_first_guess(s_l, yl, s_u, 2, seed=0, threads=1, rng=np.random.default_rng(5))
    assert len(first.rows) == MAX_SMOOTHED_CELLS and np.array_equal(first.rows, again.rows)
    np.testing.assert_allclose(first.probs, again.probs)
