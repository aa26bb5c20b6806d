"""Population frequencies re-estimated from a balanced classifier's posteriors (Saerens et al. 2002)."""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from cytoauto_core.models.priors import estimate_priors, shift_priors


def _posteriors_under_uniform_prior(x: np.ndarray) -> np.ndarray:
    """Exact posteriors of N(-1, 1) vs N(1, 1) for equal priors, as a balanced classifier would give."""
    like = np.stack([norm.pdf(x, -1.0, 1.0), norm.pdf(x, 1.0, 1.0)], axis=1)
    return like / like.sum(axis=1, keepdims=True)


def test_em_recovers_the_true_frequencies_of_overlapping_populations():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1.0, 1.0, 9_000), rng.normal(1.0, 1.0, 1_000)])  # 90 % / 10 %
    probs = _posteriors_under_uniform_prior(x)
    assert abs(probs.mean(axis=0)[1] - 0.1) > 0.1  # the naive average is far off on overlapping populations
    np.testing.assert_allclose(estimate_priors(probs), [0.9, 0.1], atol=0.015)


def test_shift_moves_posteriors_to_the_new_prior_and_keeps_them_normalised():
    probs = np.array([[0.5, 0.5], [0.8, 0.2]], np.float32)
    shifted = shift_priors(probs, np.array([0.9, 0.1]))
    np.testing.assert_allclose(shifted, [[0.9, 0.1], [0.8 * 0.9 / (0.8 * 0.9 + 0.2 * 0.1), 0.2 * 0.1 / (0.72 + 0.02)]], rtol=1e-6)
    assert shifted.dtype == np.float32
    np.testing.assert_allclose(shift_priors(probs, np.array([0.25, 0.75]), np.array([0.25, 0.75])), probs)


def test_em_starts_from_the_prior_a_model_was_trained_under():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-1.0, 1.0, 2_000), rng.normal(1.0, 1.0, 8_000)])  # 20 % / 80 %
    trained_under = np.array([0.7, 0.3])  # e.g. LDA fitted on 7 labels of one population and 3 of the other
    probs = shift_priors(_posteriors_under_uniform_prior(x), trained_under)
    np.testing.assert_allclose(estimate_priors(probs, trained_under), [0.2, 0.8], atol=0.015)
    assert abs(estimate_priors(probs)[0] - 0.2) > 0.05  # assuming balanced training instead gets it wrong
