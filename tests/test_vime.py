"""VIME: masking, each loss term by hand, pseudo-label selection, and a small end-to-end train/apply."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import log_softmax

tf = pytest.importorskip("tensorflow")

from cytoauto_core.tools.models import TrainingCancelled, softmax  # noqa: E402
from cytoauto_core.tools.models.vime import (  # noqa: E402
    FusedNet, VIMEClassifier, VIMEParams, blend, final_weights_for, network_weight_for, consistency_loss, corrupt, entropy_loss, fold_scaler, forward_logits,
    mask_loss, reconstruction_loss, weighted_cross_entropy,
)
from cytoauto_core.tools.models.pseudo_labels import estimate_prior, select_pseudo_labels  # noqa: E402
from synthetic import gaussian_cells, label_split  # noqa: E402

TINY = dict(encoder_sizes=[32], predictor_sizes=[32], pretrain_steps=40, pretrain_batch=128, semi_steps=60,
            rounds=2, batch_labeled=64, batch_unlabeled=64, progress_every=10)


def test_corrupt_masks_at_rate_p_m_with_values_from_the_same_column():
    n, d = 4000, 6
    x = (np.arange(d)[None, :] * 10_000 + np.arange(n)[:, None]).astype(np.float32)  # column j holds [j·1e4, j·1e4+n)
    x_tilde, mask = corrupt(tf.constant(x), 0.3, tf.random.Generator.from_seed(1))
    x_tilde, mask = x_tilde.numpy(), mask.numpy()
    assert abs(mask.mean() - 0.3) < 0.02
    assert np.array_equal(mask == 1, x_tilde != x)
    column_of_value = np.floor(x_tilde / 10_000)
    assert np.array_equal(column_of_value, np.broadcast_to(np.arange(d), (n, d)))


def test_mask_and_reconstruction_losses_by_hand():
    m = tf.constant([[1.0, 0.0]])
    assert float(mask_loss(m, tf.constant([[0.0, 0.0]]))) == pytest.approx(math.log(2), rel=1e-6)
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2  # BCE(1, σ(2)), BCE(0, σ(1))
    assert float(mask_loss(m, tf.constant([[2.0, 1.0]]))) == pytest.approx(expected, rel=1e-6)
    assert float(reconstruction_loss(tf.constant([[0.0, 1.0]]), tf.constant([[0.5, 0.5]]))) == pytest.approx(0.25)


def test_consistency_entropy_and_weighted_cross_entropy_by_hand():
    copies = tf.constant([[[0.2, 0.8]], [[0.6, 0.4]]])  # K=2 copies of one cell: variance 0.04 per class
    assert float(consistency_loss(copies)) == pytest.approx(0.04, rel=1e-5)
    assert float(consistency_loss(tf.constant([[[0.3, 0.7]], [[0.3, 0.7]]]))) == pytest.approx(0.0)
    assert float(entropy_loss(tf.constant([[0.5, 0.5], [1.0, 0.0]]))) == pytest.approx(math.log(2) / 2, rel=1e-5)
    logits = tf.constant([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(true) = 1/2 and 3/4
    ce = weighted_cross_entropy(tf.constant([0, 0]), logits, tf.constant([1.0, 3.0]))
    assert float(ce) == pytest.approx((math.log(2) + 3 * math.log(4 / 3)) / 4, rel=1e-5)


def test_pseudo_labels_are_confident_and_class_balanced():
    probs = np.array([[0.95, 0.05], [0.99, 0.01], [0.91, 0.09], [0.6, 0.4], [0.05, 0.95], [0.1, 0.9]], np.float32)
    idx, labels = select_pseudo_labels(probs, threshold=0.9, fraction=0.5, cap=10)
    assert idx.tolist() == [1, 0, 4] and labels.tolist() == [0, 0, 1]
    idx, _ = select_pseudo_labels(probs, threshold=0.9, fraction=1.0, cap=1)
    assert idx.tolist() == [1, 4]


def _equal_share_posteriors(shares: list[float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells from 1-D unit Gaussians at 0, 2, 4 … in the given shares, and their posteriors at equal shares."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(shares), n, p=shares)
    x = rng.normal(2.0 * y, 1.0)
    log_lik = -0.5 * (x[:, None] - 2.0 * np.arange(len(shares))[None, :]) ** 2
    return softmax(log_lik.astype(np.float32)), y


def test_estimated_shares_recover_a_rare_population():
    probs, y = _equal_share_posteriors([0.9, 0.08, 0.02], 50_000, seed=0)
    called = np.bincount(probs.argmax(axis=1), minlength=3)
    assert called[1] > 2 * np.sum(y == 1)  # equal shares over-call the smaller populations
    assert estimate_prior(probs) == pytest.approx([0.9, 0.08, 0.02], abs=0.01)


def test_a_rare_populations_pseudo_labels_are_the_cells_that_look_like_it():
    probs, y = _equal_share_posteriors([0.97, 0.03], 50_000, seed=1)
    called = np.flatnonzero(probs[:, 1] >= 0.8)
    assert np.mean(y[called] == 1) < 0.6  # at equal shares, most cells called rare above 0.8 are not
    idx, labels = select_pseudo_labels(probs, threshold=0.8, fraction=1.0, cap=100_000)
    assert np.mean(y[idx[labels == 1]] == 1) > 0.8


def test_params_from_an_older_bundle_drop_retired_options():
    old = {**VIMEParams(seed=4).to_dict(), "xgb_min_labels": 25}
    assert VIMEParams.from_dict(old) == VIMEParams(seed=4)


def test_train_and_apply_on_separated_populations_with_progress():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    calls: list[tuple[float, str]] = []
    model = VIMEClassifier(VIMEParams(**TINY, seed=3)).fit(x[lab], y[lab], x[rest], progress=lambda f, m: calls.append((f, m)))
    proba = model.predict_proba(x[rest])
    assert proba.dtype == np.float32 and proba.shape == (len(rest), 4)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(model.classes_[proba.argmax(axis=1)] == y[rest]) > 0.9
    fractions = [f for f, _ in calls]
    assert len(calls) >= 10 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("loss" in m for _, m in calls) and any("cross-entropy" in m for _, m in calls)
    assert any(m.startswith("VIME experts") for _, m in calls), "the experts' stage is announced"
    again = VIMEClassifier(VIMEParams(**TINY, seed=3)).fit(x[lab], y[lab], x[rest]).predict_proba(x[rest])
    np.testing.assert_allclose(again, proba, atol=1e-5)


def test_should_stop_raises_training_cancelled():
    x, y = gaussian_cells(100)
    lab, rest = label_split(y, 5)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 2

    with pytest.raises(TrainingCancelled):
        VIMEClassifier(VIMEParams(**TINY)).fit(x[lab], y[lab], x[rest], should_stop=stop)
    assert len(asked) == 2


@pytest.mark.parametrize("encoder, predictor, skip, members", [([16], [16], True, 1), ([16, 8], [], True, 2), ([16], [8], False, 1)])
def test_fused_inference_matches_scaled_forward_pass(encoder, predictor, skip, members):
    rng = np.random.default_rng(0)
    d, c = 6, 4
    nets = []
    for _ in range(members):
        sizes, layers = [d] + encoder, []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers.append((rng.normal(0, 0.5, (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32)))
        prev = encoder[-1] + (d if skip else 0)
        for b in predictor + [c]:
            layers.append((rng.normal(0, 0.5, (prev, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32)))
            prev = b
        nets.append(layers)
    x = rng.normal(3, 2, (1000, d)).astype(np.float32)
    offset, scale = x.mean(axis=0), x.std(axis=0)
    s = (x - offset) / scale
    expected = sum(softmax(forward_logits(m, s, len(encoder), skip)) for m in nets) / members
    got = FusedNet(nets, offset, scale, len(encoder), skip, chunk=300).predict_proba(x)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    w, b = rng.normal(0, 0.5, (d, c)), rng.normal(0, 0.1, c)
    w_raw, b_raw = fold_scaler(w, b, offset, scale)
    np.testing.assert_allclose(x @ w_raw + b_raw, s @ w + b, atol=1e-4)


def test_blends_weight_parts_as_documented():
    a = np.array([[0.9, 0.1], [0.5, 0.5]], np.float32)
    b = np.array([[0.2, 0.8], [0.1, 0.9]], np.float32)
    np.testing.assert_allclose(blend([a, b], [1, 3], "arithmetic"), 0.25 * a + 0.75 * b, atol=1e-6)
    log = 0.25 * np.log(a + 1e-6) + 0.75 * np.log(b + 1e-6)
    np.testing.assert_allclose(blend([a, b], [0.5, 1.5], "geometric"), np.exp(log) / np.exp(log).sum(1, keepdims=True),
                               atol=1e-6)
    with pytest.raises(ValueError):
        blend([a, b], [1, 1], "median")


def test_experts_are_blended_saved_and_reloaded(tmp_path):
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    model = VIMEClassifier(VIMEParams(**TINY)).fit(x[lab], y[lab], x[rest])
    assert model.linear_expert is not None and model.booster_expert is not None
    proba = model.predict_proba(x[rest])
    p = model.params
    scaler = (np.asarray(model.scaler.offset), np.asarray(model.scaler.scale))
    network = FusedNet(model.members, *scaler, len(p.encoder_sizes), p.skip_input).predict_proba(x[rest])
    s = model.scaler.transform(x[rest])
    logits = s @ model.linear_expert[0] + model.linear_expert[1]
    booster = model.booster_expert.inplace_predict(s).reshape(len(s), -1)
    lda, logreg, boost = model.expert_shares_
    assert lda + logreg + boost == pytest.approx(1.0)
    weights = [0.1, 0.9 * (lda + logreg), 0.9 * boost]  # 5 labels per population: the network 0.1, the experts the rest
    np.testing.assert_allclose(model.final_weights_, weights, atol=1e-4)
    assert p.final_blend == "geometric"
    parts = model.part_probabilities(x[rest])
    for name, expected_part in zip(("network", "linear pair", "booster"), (network, softmax(logits), booster)):
        np.testing.assert_allclose(parts[name], expected_part, atol=1e-5)
    log = weights[0] * np.log(network + 1e-6) + weights[1] * log_softmax(logits, axis=1) + weights[2] * np.log(booster + 1e-6)
    np.testing.assert_allclose(proba, softmax(log), atol=1e-4)
    assert np.mean(model.classes_[proba.argmax(axis=1)] == y[rest]) > 0.9
    config = json.loads(json.dumps(model.save_state(str(tmp_path))))
    assert config["params"]["final_weights"] == model.final_weights_, "the bundle records the weights it was trained with"
    assert list(config["params"]["expert_shares"].values()) == list(model.expert_shares_)
    assert model.weights_text().startswith("network 0.10 · linear pair") and "experts' shares" in model.weights_text()
    again = VIMEClassifier.load_state(str(tmp_path), config)
    np.testing.assert_allclose(again.predict_proba(x[rest]), proba, atol=1e-6)
    del config["params"]["expert_shares"]  # a bundle saved before the shares: its linear pair's probabilities floored
    before = VIMEClassifier.load_state(str(tmp_path), config)
    floored = weights[0] * np.log(network + 1e-6) + weights[1] * np.log(softmax(logits) + 1e-6) + weights[2] * np.log(booster + 1e-6)
    np.testing.assert_allclose(before.predict_proba(x[rest]), softmax(floored), atol=1e-4)


def test_the_networks_weight_grows_with_the_labels_per_population_and_the_experts_share_the_rest():
    assert network_weight_for(5) == network_weight_for(3) == network_weight_for(0) == 0.1
    assert network_weight_for(10) == 0.2
    assert network_weight_for(20) == network_weight_for(25) == network_weight_for(1300) == 0.3
    assert 0.1 < network_weight_for(7) < 0.2
    assert final_weights_for(5) == [0.1, 0.2, 0.7]  # the default shares: linear pair 2/9, booster 7/9
    assert final_weights_for(10, (0.5, 0.0, 0.5)) == [0.2, 0.4, 0.4]
    assert final_weights_for(25, (0.0, 0.0, 1.0)) == [0.3, 0.0, 0.7]
    assert sum(final_weights_for(7, (0.2, 0.3, 0.5))) == pytest.approx(1.0)


def test_the_network_alone_learns_from_the_labels_and_its_own_pseudo_labels():
    x, y = gaussian_cells()
    lab, rest = label_split(y, 10)
    model = VIMEClassifier(VIMEParams(**TINY, final_weights=[1.0, 0.0, 0.0])).fit(x[lab], y[lab], x[rest])
    assert model.final_weights_ == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(model.predict_proba(x[rest]), model.part_probabilities(x[rest], ["network"])["network"],
                               atol=1e-6)
    assert np.mean(model.classes_[model.predict_proba(x[rest]).argmax(axis=1)] == y[rest]) > 0.9


def test_bundle_of_the_retired_cascade_teacher_still_loads_and_applies(tmp_path):
    """Bundles saved before the first guess replaced the cascade keep their blend weights and their gates are ignored."""
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    model = VIMEClassifier(VIMEParams(**TINY)).fit(x[lab], y[lab], x[rest])
    config = model.save_state(str(tmp_path))
    for key in ("final_weights", "final_blend"):
        del config["params"][key]
    config["params"].update(teacher="cascade", valley_gates=True, cascade_fraction=0.3, final_teacher_weight=0.5,
                            final_xgb_weight=0.6)
    config["valley_gates"] = [{"low": 0, "high": 1, "marker": 0, "threshold": 1.0, "dip": 0.2}]
    old = VIMEClassifier.load_state(str(tmp_path), config)
    assert old.params.final_blend == "arithmetic" and not hasattr(old.params, "valley_gates")
    np.testing.assert_allclose(old.params.final_weights, [0.2, 0.2, 0.6])
    network = FusedNet(old.members, np.asarray(old.scaler.offset), np.asarray(old.scaler.scale),
                       len(old.params.encoder_sizes), old.params.skip_input).predict_proba(x[rest])
    s = old.scaler.transform(x[rest])
    linear = softmax(s @ old.linear_expert[0] + old.linear_expert[1])
    booster = old.booster_expert.inplace_predict(s).reshape(len(s), -1)
    np.testing.assert_allclose(old.predict_proba(x[rest]), 0.4 * (0.5 * network + 0.5 * linear) + 0.6 * booster,
                               atol=1e-5)
    assert np.mean(old.classes_[old.predict_proba(x[rest]).argmax(axis=1)] == y[rest]) > 0.9
