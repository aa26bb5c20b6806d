"""Transforms: arcsinh with per-channel cofactors, linear scatter/time, compensation, default features."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import CORPUS
from cytoauto_core.dataset import Spillover
from cytoauto_core.demo import make_demo
from cytoauto_core.errors import CytoInputError
from cytoauto_core.io import read_file
from cytoauto_core.transforms import COFACTOR_FLOW, Scaler, TransformSpec, default_spec, transform_events


def test_arcsinh_cofactors_and_linear_channels():
    events = np.random.default_rng(0).normal(0, 500, (40_000, 5)).astype(np.float32)
    spec = TransformSpec(features=["c", "a", "d"], cofactor=5, cofactors={"d": 150}, linear=["a"])
    out = transform_events(events, list("abcde"), spec)
    expected = np.column_stack([np.arcsinh(events[:, 2] / 5), events[:, 0], np.arcsinh(events[:, 3] / 150)])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32


def test_missing_channel_is_one_sentence():
    with pytest.raises(CytoInputError, match="lacks channel 'CD3'"):
        transform_events(np.zeros((3, 1), np.float32), ["CD4"], TransformSpec(features=["CD3"]))


def test_compensation_inverts_the_spillover():
    rng = np.random.default_rng(1)
    true = rng.uniform(0, 1000, (1000, 2)).astype(np.float32)
    spill = np.array([[1.0, 0.2], [0.1, 1.0]])
    observed = (true @ spill).astype(np.float32)
    spec = TransformSpec(features=["A", "B"], arcsinh=False, compensate=True)
    out = transform_events(observed, ["A", "B"], spec, Spillover(["A", "B"], spill))
    np.testing.assert_allclose(out, true, rtol=1e-4, atol=1e-2)


def test_defaults_for_mass_and_flow_files():
    mass = default_spec(make_demo(1_000))
    assert mass.cofactor == 5 and len(mass.features) == 32 and not mass.compensate
    flow = read_file(CORPUS / "flowsom_ff.fcs")
    spec = default_spec(flow)
    assert spec.cofactor == COFACTOR_FLOW and spec.compensate, "flow files with a spillover matrix are compensated"
    assert not any(name.lower().startswith(("fsc", "ssc", "time")) for name in spec.features)


def test_scaler_round_trips_as_json():
    x = np.random.default_rng(2).normal(3, 2, (5_000, 4)).astype(np.float32)
    scaler = Scaler("standard").fit(x)
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_allclose(again.transform(x).mean(axis=0), 0, atol=1e-4)
    minmax = Scaler("minmax").fit(x).transform(x)
    assert np.quantile(minmax, 0.005) == pytest.approx(0, abs=1e-2) and np.quantile(minmax, 0.995) == pytest.approx(1, abs=1e-2)
