"""VIME: masking, each loss term by hand, pseudo-label selection, and a small end-to-end train/apply."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cytoauto_core.models import TrainingCancelled  # noqa: E402
from cytoauto_core.models.vime import (  # noqa: E402
    FusedNet, VIMEClassifier, VIMEParams, consistency_loss, forward_logits, softmax, corrupt, entropy_loss, mask_loss,
    reconstruction_loss, select_pseudo_labels, weighted_cross_entropy, product_of_experts,
)
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
    probs = np.array([[0.95, 0.05], [0.99, 0.01], [0.91, 0.09], [0.6, 0.4], [0.05, 0.95], [0.2, 0.8]], np.float32)
    idx, labels = select_pseudo_labels(probs, threshold=0.9, fraction=0.5, cap=10)
    assert idx.tolist() == [1, 0, 4] and labels.tolist() == [0, 0, 1]
    idx, _ = select_pseudo_labels(probs, threshold=0.9, fraction=1.0, cap=1)
    assert idx.tolist() == [1, 4]


def test_product_of_experts_is_confident_only_where_both_agree():
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]])
    b = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])
    g = product_of_experts(a, b)
    np.testing.assert_allclose(g.sum(axis=1), 1.0)
    np.testing.assert_allclose(g[0], [0.9, 0.1])  # agreeing experts keep their confidence
    np.testing.assert_allclose(g[1], [0.5, 0.5])  # opposite convictions cancel
    assert 0.5 < g[2, 0] < 0.9  # an undecided expert tempers a confident one


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
    assert any(m.startswith("VIME teacher (cascade)") for _, m in calls), "the teacher stage is announced"
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
    lin = (rng.normal(0, 0.5, (d, c)).astype(np.float32), rng.normal(0, 0.1, c).astype(np.float32))
    blended = FusedNet(nets, offset, scale, len(encoder), skip, linear=lin, linear_weight=0.25).predict_proba(x)
    np.testing.assert_allclose(blended, 0.75 * expected + 0.25 * softmax(s @ lin[0] + lin[1]), atol=1e-5)


def test_teacher_blend_is_saved_and_reloaded(tmp_path):
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    model = VIMEClassifier(VIMEParams(**TINY, teacher="lda", final_teacher_weight=0.5)).fit(x[lab], y[lab], x[rest])
    assert model.linear_teacher is not None and model.xgb_teacher is None
    config = model.save_state(str(tmp_path))
    again = VIMEClassifier.load_state(str(tmp_path), config)
    np.testing.assert_allclose(again.predict_proba(x[rest]), model.predict_proba(x[rest]), atol=1e-6)
    assert np.mean(model.classes_[model.predict_proba(x[rest]).argmax(axis=1)] == y[rest]) > 0.9


def _root_cover(booster) -> float:
    """Hessian mass at the first tree's root: grows with the (weighted) number of training rows."""
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    return float(trees[0]["sum_hessian"][0])


def test_xgboost_teachers_are_blended_saved_and_reloaded(tmp_path):
    x, y = gaussian_cells()
    lab, rest = label_split(y, 5)
    fit = lambda teacher: VIMEClassifier(VIMEParams(**TINY, teacher=teacher)).fit(x[lab], y[lab], x[rest])
    plain, cascade = fit("xgboost"), fit("cascade")
    for m in (plain, cascade):
        assert m.xgb_teacher is not None and m.linear_teacher is None
        assert np.mean(m.classes_[m.predict_proba(x[rest]).argmax(axis=1)] == y[rest]) > 0.9
    assert _root_cover(cascade.xgb_teacher) > 5 * _root_cover(plain.xgb_teacher)  # the first guess's pseudo-labels joined the labels
    model = cascade
    proba = model.predict_proba(x[rest])
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    again = VIMEClassifier.load_state(str(tmp_path), model.save_state(str(tmp_path)))
    np.testing.assert_allclose(again.predict_proba(x[rest]), proba, atol=1e-6)


def test_cascade_teacher_draws_a_valley_gate_and_the_bundle_keeps_it(tmp_path):
    from test_valleys import mixture_valley, two_populations

    x, y = two_populations()
    lab = np.r_[np.flatnonzero(x[:, 0] < -0.8)[:8], np.flatnonzero(x[:, 0] > 3.8)[:8]]  # labels far from the valley
    rest = np.setdiff1d(np.arange(len(y)), lab)
    model = VIMEClassifier(VIMEParams(**TINY)).fit(x[lab], y[lab], x[rest])
    config = model.save_state(str(tmp_path))
    [gate] = config["valley_gates"]
    assert (gate["low"], gate["high"], gate["marker"]) == (0, 1, 0)
    assert abs(gate["threshold"] - mixture_valley()) < 0.3  # in marker units, not scaled ones
    again = VIMEClassifier.load_state(str(tmp_path), json.loads(json.dumps(config)))
    [reloaded] = again.gates_in_marker_units()
    assert reloaded == pytest.approx(gate)
    off = VIMEClassifier(VIMEParams(**TINY, valley_gates=False)).fit(x[lab], y[lab], x[rest])
    assert off.valley_gates == [] and off.save_state(str(tmp_path))["valley_gates"] == []
    assert _root_cover(model.xgb_teacher) > _root_cover(off.xgb_teacher)  # the gated cells joined the booster's cells
